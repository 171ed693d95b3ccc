"""Overview: quality and task curves against the level, subgroup gaps with CIs, and example images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import page_run, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import exports, findings, plots, results
from recon_core.fairness import flips
from recon_core.report import build_report, slides_inputs
from recon_core.store import CLEAN
from recon_core.tables import attribute_text

ensure_routed("pages/overview.py")

st.title("Overview")
run = page_run()
key = run.key
version = data.store().version()
agg = data.aggregates(key)


def watch_for_new_cells() -> None:
    """While a build runs, redraw the page as soon as another cell lands."""
    if data.store().version() != version:
        st.rerun(scope="app")


if run.status == "running" and st.sidebar.toggle("Auto-refresh while the build runs", value=True, key="autorefresh"):
    st.fragment(watch_for_new_cells, run_every=3.0)()


def failures_and_outside_models() -> None:
    """The run's failed cells with their reasons, and the models from outside Tandem it used (their cards).

    Read from the store only (no model is loaded): a failed cell has no curve, so it is named here.
    """
    failed = data.failed_cells(key)
    if len(failed):
        st.subheader("Failed cells")
        show(failed.rename(columns={"message": "reason"}), hide_index=True, width="stretch",
             column_config={"level": st.column_config.NumberColumn(format="%g"),
                            "reason": st.column_config.TextColumn(width="large")})
        st.caption("These cells stored nothing and have no curve; the other cells are complete. Starting the run "
                   "again on the Run page retries them.")
    cards = data.model_cards(key)
    if len(cards):
        with st.expander(f"Models from outside Tandem ({len(cards)})"):
            show(results.model_card_rows(cards), hide_index=True, width="stretch")
            st.caption("SHA-256 of each model's files, shortened: part of the run's key, so a changed file is a "
                       "new run. Contract: what Tandem hands the model and holds its output to.")


if agg.empty:
    st.info(f"Run {run.name} has no finished cells yet ({run.status}). This page fills in as cells land.")
    failures_and_outside_models()
    st.stop()
if run.status == "running":
    st.caption(f"Run status: **running** — showing the {run.cells_done} cells finished so far; "
               "this page refreshes as more land.")
elif run.status == "incomplete":  # its message lists the failed cells: the table below does, in full
    st.caption("Run status: **incomplete** — some cells failed (listed below); the others are stored and shown.")
elif run.status != "done":
    st.caption(f"Run status: **{run.status}** — {run.message}")
failures_and_outside_models()

choice = sidebar_choices(agg, run)
chosen, levels, level, attribute = choice.reconstructors, choice.levels, choice.level, choice.attribute
attr_text = attribute_text(attribute).lower()

worst = run.worst_level(levels)  # the known-truth sentence is about the most degraded level shown
ci = data.ci_level(key)
checks = {r: data.hallucination_rates(key, r, float(worst), (attribute,), ci_level=ci)  # shared with Uncertainty
          for r in chosen}
found = findings.study_findings(agg, run, chosen, levels, checks, attribute, ci)
if found:
    panel = st.container(border=True, key="findings")  # what the study shows, in words, before any chart
    panel.subheader(findings.TITLE)
    panel.markdown("\n".join(f"- {f.text}" for f in found))
    panel.caption("From the stored statistics of the reconstructors and levels picked in the sidebar; intervals are "
               f"{100 * ci:g} % intervals over {run.unit_text}.")

# All this page draws, in one pass over the run's aggregates; categories make the many filters below and the
# hashing of each chart's input (its cache key) cheap.
summary_rows = agg.label.isin(["", "mean"]) | (agg.metric == run.primary_test)  # the primary test per finding too
agg = agg[summary_rows & agg.attribute.isin(["all", attribute])].drop(columns="config_hash").astype(
    {c: "category" for c in ("reconstructor", "metric", "label", "attribute", "grp")})
view = agg[agg.reconstructor.isin(chosen) & agg.level.isin(levels)]
clean = agg[agg.reconstructor == CLEAN]
worse = run.level.higher_is_worse

for column, curve in zip(st.columns(len(run.curves)), run.curves, strict=True):
    base = results.overall(clean, curve.metric, curve.label)
    chart(column, f"{curve.metric}-vs-level",
          cached_plot("metric_vs_level", results.overall(view, curve.metric, curve.label), curve.metric, curve.title,
                      curve.axis, run.level_label, base.iloc[0] if len(base) else None, higher_is_worse=worse,
                      colours=run.colours),
          width="stretch", run=run)
st.caption(f"Shaded bands and brackets are {exports.ci_text(data.ci_level(key))} over {run.unit_text}. "
           "Dashed lines are the same diagnostic models on the clean images. Each chart's camera icon saves a "
           f"{exports.size_text(plots.CHART_SIZE)} with its title, intervals and run.")

st.header(f"Subgroups by {attr_text} at {level:g} {run.level.unit}")
st.caption("Change the level in focus and the attribute in the sidebar; they hold on every page.")
at_level = pd.concat([clean, agg[agg.reconstructor.isin(chosen) & (agg.level == level)]])
forests = st.columns(len(run.group_metrics) + 1)
for column, metric in zip(forests, run.group_metrics, strict=False):
    rows = results.by_group(at_level, metric.metric, metric.label, attribute)
    chart(column, f"{metric.metric}-by-group", cached_plot("group_forest", rows, f"{metric.title} by {attr_text}",
                                                          metric.axis, colours=run.colours), width="stretch", run=run)
gaps = at_level[at_level.metric.isin([g.metric for g in run.gap_metrics]) & at_level.label.isin(["", "mean"])
                & (at_level.attribute == attribute)]
chart(forests[-1], "fairness-gaps",
      cached_plot("gap_bars", gaps, f"Fairness gaps by {attr_text} at {level:g}", colours=run.colours,
                  labels={g.metric: g.title for g in run.gap_metrics}), width="stretch", run=run)
for column, gap in zip(st.columns(len(run.gap_metrics)), run.gap_metrics, strict=True):
    curve = results.by_group(view, gap.metric, gap.label, attribute)
    base = results.by_group(clean, gap.metric, gap.label, attribute)
    figure = cached_plot("metric_vs_level", curve, gap.metric, f"{gap.title} by {attr_text}", gap.axis,
                         run.level_label, base.iloc[0] if len(base) else None, higher_is_worse=worse,
                         colours=run.colours)
    chart(column, f"{gap.metric}-curve", figure, width="stretch", run=run)

with st.expander(f"Figure for slides ({exports.size_text(plots.SLIDES_SIZE)})", icon=":material/slideshow:"):
    slides = slides_inputs(agg, run, chosen, levels, attribute, float(level),
                           exports.ci_level(data.run_config(key)))
    chart(st, "slides", cached_plot("slides_figure", **slides), run=run, size=plots.SLIDES_SIZE, width="stretch")
    st.caption("Quality and task against the level and the subgroup gaps at the level in focus, in one 16:9 figure "
               "with its title, intervals and run: its camera icon saves it at 1920×1080 for a slide.")

added = results.added(at_level, run, level, attribute)
table = results.added_table(added, at_level, attribute, run.added_metrics)
st.subheader("Added by reconstruction (reconstructed − clean, paired)")
if run.statistics_outdated:
    st.warning(results.OUTDATED)
show(table, hide_index=True, width="stretch",
     column_config={c: st.column_config.TextColumn(width="medium") for c in ("statistic", "finding", "test")})
st.caption("Signed differences lead: 'groups' names each one (first group − second, or a group − the rest). "
           + results.TEST_NOTE)
if table["⚠ rate at a bound"].astype(bool).any():
    st.caption("⚠ A rate at the same bound in every group (the fixed threshold calls every such case one way for "
               "everyone): a gap that shrinks there is a collapse of the decision, not a fairer model.")
first_group = run.group_metrics[0]
small = at_level[(at_level.attribute == attribute) & at_level.estimate.isna() & (at_level.metric == first_group.metric)]
if len(small):
    st.caption("Groups without an estimate (too small, or too few positive or negative cases): "
               + ", ".join(sorted({f"{g} (n={n})" for g, n in zip(small.grp, small.n, strict=True)})))

st.download_button(
    "Download a report of this selection (HTML, opens offline)",
    lambda: build_report(data.reading(), key, chosen, levels, attribute, float(level)).encode(),  # built on click
    f"tandem-report-{key[:8]}.html", "text/html", key="dl_report", on_click="ignore")

st.header(f"Example images at {level:g} {run.level.unit}")
clean_examples = data.examples(key, CLEAN, 0.0)
if clean_examples.empty:
    st.info("No example images stored for this run.")
    st.stop()
image_ids = sorted(clean_examples.image_id.unique())


@st.cache_data(show_spinner=False, max_entries=64)
def changed_calls(key: str, examples: tuple[str, ...], reconstructors: tuple[str, ...], level: float,
                  version: str) -> dict[str, pd.DataFrame]:
    """Per example, the calls the chosen reconstructions at `level` changed against the clean image: lost or
    invented (cached: a level or reconstructor change would otherwise filter every example's scores again)."""
    thresholds, calls = data.thresholds(key), {}
    for example in examples:
        scores = data.image_scores(key, example)
        scores = scores[(scores.reconstructor == CLEAN)
                        | (scores.reconstructor.isin(reconstructors) & (scores.level == level))]
        calls[example] = flips.changed_calls(scores, thresholds, CLEAN)
    return calls


calls = changed_calls(key, tuple(image_ids), tuple(chosen), float(level), version)
by_reconstruction = {i: int((~c.reconstructor.isin(run.returns_degraded)).sum()) for i, c in calls.items()}
example_key = scoped("example", key)
if example_key not in st.session_state:  # open on the first example whose call a reconstruction changes
    st.session_state[example_key] = next((i for i in image_ids if by_reconstruction[i]), image_ids[0])
image_id = st.selectbox("Test image", image_ids, key=example_key,
                        format_func=lambda i: f"{i} · ⚠ a reconstruction changes {by_reconstruction[i]} "
                                              f"call{'s' if by_reconstruction[i] > 1 else ''}"
                        if by_reconstruction[i] else i)
mine = clean_examples[clean_examples.image_id == image_id].set_index("kind").pixels


def outlines(kinds: pd.Series) -> dict:
    """The true (green) and predicted (red) outlines where masks are stored (segmentation tasks)."""
    return {name: kinds[kind] for name, kind in (("truth", "mask_true"), ("prediction", "mask_pred")) if kind in kinds}


clean_pixels = mine["clean"]
truth = {"truth": mine["mask_true"]} if "mask_true" in mine else {}
panels = [("clean", clean_pixels, "image", outlines(mine))]
errors = []
for recon in chosen:
    ex = data.examples(key, recon, float(level))
    ex = ex[ex.image_id == image_id].set_index("kind").pixels
    if ex.empty:
        continue
    if len(panels) == 1:
        panels.append((f"degraded ({level:g})", ex["degraded"], "image"))
    pixels = ex["reconstructed"]
    if recon not in run.returns_degraded:  # a method returning the degraded image is shown once
        panels.append((recon, pixels, "image", truth | outlines(ex.drop(index="mask_true", errors="ignore"))))
    elif truth:
        panels[1] = (*panels[1][:3], truth | outlines(ex))
    errors.append((f"|{recon} − clean|", np.abs(pixels - clean_pixels), "error"))
    if "uncertainty" in ex:  # several posterior samples were drawn: their per-pixel spread
        errors.append((f"{recon}: posterior std", ex["uncertainty"], "error"))
if truth:
    st.caption("Green: the true outline; red: the segmenter's, on each image.")
chart(st, "example-images", cached_plot("image_grid", panels + errors, columns=len(panels)), width="stretch", run=run,
      title=f"Example image {image_id}: clean, degraded and reconstructed at {level:g} {run.level.unit}")
scores = data.image_scores(key, image_id)
scores = scores[(scores.reconstructor == CLEAN) | (scores.reconstructor.isin(chosen) & (scores.level == level))]
if len(scores):
    wide = scores.pivot_table(index="label", columns="reconstructor", values="score")
    target = scores.drop_duplicates("label").set_index("label").target
    st.caption("Classifier probability per finding (truth: 1 present, 0 absent)")
    show(wide.assign(truth=target), width="stretch",
         column_config={c: st.column_config.NumberColumn(format="%.2f") for c in [*wide, "truth"]})
    if len(calls[image_id]):  # an invented or lost finding is said, not left to be read off the table
        st.warning("\n".join(
            f"- **{c.reconstructor}**{' (the degraded image)' if c.reconstructor in run.returns_degraded else ''} "
            f"{'invents' if c.kind == 'invented' else 'loses'} **{c.label}**: {c.score:.2f} against "
            f"{c.clean_score:.2f} on the clean image (threshold {c.threshold:.2f}; "
            f"truth: {'present' if c.target == 1 else 'absent'})"
            for c in calls[image_id].itertuples()), icon=":material/warning:")
