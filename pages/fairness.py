"""Fairness: per-group metrics with CIs (clean vs reconstructed), added bias across the sweep, quality vs task."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import grouped_results, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import discovery, results
from recon_core.metrics import catalogue
from recon_core.store import CLEAN

ensure_routed("pages/fairness.py")

# Per-group metrics the picker offers after the run's own headline group metrics (Dice first on MRI).
GROUP_METRICS = [*catalogue.TASK, *catalogue.QUALITY, *catalogue.SEGMENTATION]


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    st.download_button(f"Download {name} (CSV)", frame.to_csv(index=False).encode(), f"{name}.csv", "text/csv",
                       key=key)


st.title("Fairness")
run, agg = grouped_results()
key = run.key

choice = sidebar_choices(agg, run)
level, attribute = choice.level, choice.attribute
labels = sorted(set(agg.loc[agg.metric.isin(catalogue.TASK), "label"]) - {"mean"})
c1, c2, c3 = st.columns(3)
recon = c1.selectbox("Reconstructor", choice.reconstructors, key=scoped("fair_recon", key))
present = set(agg.metric)
offered_metrics = dict.fromkeys(m for m in (*(g.metric for g in run.group_metrics), *GROUP_METRICS) if m in present)
metric = c2.selectbox("Metric", list(offered_metrics), format_func=catalogue.label, key=scoped("fair_metric", key))
per_label = catalogue.BY_NAME[metric].per_label
label = c3.selectbox("Finding", [*labels, "mean"], key=scoped("fair_label", key),  # per finding first
                     format_func=lambda lb: "mean over findings" if lb == "mean" else lb) if per_label else ""
against_clean = catalogue.BY_NAME[metric].kind != "quality"  # quality is measured against the clean image

st.subheader(f"{catalogue.label(metric)} by {attribute}: clean images vs {recon} at {level:g}")
sel = agg[(agg.metric == metric) & (agg.label == label) & (agg.attribute == attribute)
          & (((agg.reconstructor == CLEAN) & against_clean) | ((agg.reconstructor == recon) & (agg.level == level)))]
if not ((agg.reconstructor == recon) & (agg.level == level)).any():
    st.warning(f"The store holds no results for {recon} at {level:g} {run.level.unit}; pick another level in "
               "the sidebar.")
chart(st, "group-metric", cached_plot("group_forest", sel, "", catalogue.label(metric), colours=run.colours),
      width="stretch", run=run, title=f"{catalogue.label(metric)} by {attribute}: clean images vs {recon} at {level:g}")
too_small = sel[sel.estimate.isna()]
if len(too_small):
    st.caption("No estimate (group too small, or fewer positive or negative cases than the run's minimum, "
               "evaluation.min_positives / min_negatives): "
               + ", ".join(sorted({f"{g} (n={n})" for g, n in zip(too_small.grp, too_small.n, strict=True)})))
thin = sel[sel.dropped.fillna(0) > 0.01] if "dropped" in sel else sel.iloc[:0]
if len(thin):
    st.caption("Resamples without a value (a group drew no positive or no negative case; left out of the "
               "interval): " + ", ".join(f"{g} {d:.0%}" for g, d in zip(thin.grp, thin.dropped, strict=True)))
forest = sel[["reconstructor", "level", "grp", "estimate", "ci_low", "ci_high", "n", "n_pos",
              *(["dropped"] if "dropped" in sel else [])]]
download(forest, f"{metric}-by-{attribute}", "dl_forest")

st.subheader("Bias added by reconstruction across the sweep")
if run.statistics_outdated:
    st.warning(results.OUTDATED)
offered = [g for g in (run.primary_test, *(f"{g}_added" for g in (*catalogue.FAIRNESS_GAPS,
                                                                   *(h.metric for h in run.gap_metrics))))
           if g in present]  # the run's headline test first, then the signed differences
gap = st.radio("Gap", list(dict.fromkeys(offered)), format_func=catalogue.label, horizontal=True,
               key=scoped("fair_gap", key))
gap_label = (label or labels[0] if labels else "mean") if catalogue.source(gap).per_label else ""
signed = gap.endswith("_diff_added")
grid = agg[(agg.metric == gap) & (agg.label == gap_label) & (agg.attribute == attribute)]
if signed:
    contrasts = sorted(set(grid.grp))
    contrast = st.selectbox("Groups compared", contrasts, key=scoped("fair_contrast", key)) if len(contrasts) > 1 \
        else (contrasts[0] if contrasts else "")
    grid = grid[grid.grp == contrast]
collapsed = results.collapsed_cells(agg, gap, gap_label, attribute)
what = f"{catalogue.label(gap)} ({grid.grp.iloc[0]})" if signed and len(grid) else catalogue.label(gap)
family = grid.family.dropna()
star = (f"★ q < 0.05 within the {family.iloc[0]} family (Benjamini–Hochberg)" if len(family)
        else "no test: descriptive" if not signed else "★ once the run is complete")
heat = cached_plot("added_heatmap", grid, f"{what}{' · ' + gap_label if gap_label else ''}, reconstructed − clean"
                   f"<br><sup>{star}</sup>",
                   higher_is_worse=run.level.higher_is_worse, level_label=run.level_label, flagged=collapsed)
chart(st, "added-bias", heat, width="stretch", run=run)
stars = discovery.stars(agg, grid)  # a family's q < 0.05 may all lie on other maps
if stars is not None:
    st.caption(stars.text())
    if stars.elsewhere:
        st.page_link("pages/discovery.py", label="Open Weak subgroups", icon=":material/manage_search:")
if signed:
    st.caption("Colour: red where the first group's value rose relative to the other's, blue where it fell; the "
               "colour range is set by the widest interval. Whether that widens the gap depends on the difference "
               "on clean images, below. " + results.TEST_NOTE)
else:
    st.caption("A folded max − min gap is descriptive: sampling noise alone makes it positive, so it carries no "
               "test. Blue where it narrows, red where it widens; pick a signed difference for the test.")
if collapsed:
    st.warning("⚠ Uncoloured cells: " + "; ".join(f"{r} at {lv:g}: {why}" for (r, lv), why in sorted(collapsed.items()))
               + ". There the fixed threshold calls every such case one way for everyone, so a gap that shrinks "
               "is a collapse of the decision, not a fairer model.")
inherent = agg[(agg.reconstructor == CLEAN) & (agg.metric == gap.removesuffix("_added"))
               & (agg.label == gap_label) & (agg.attribute == attribute)]
if signed:
    inherent = inherent[inherent.grp == contrast]
if len(inherent):
    row = inherent.iloc[0]
    tested = results.test_text(row.p_value, row.q_value, row.family)
    saturated = results.collapsed_cells(agg, gap, gap_label, attribute, clean=True)
    st.caption(f"Inherent (the diagnostic model on clean images), {row.grp or 'max − min'}: "
               f"{results.interval_text(row.estimate, row.ci_low, row.ci_high, signed=signed)}"
               + (f" · {tested}" if tested else "")
               + "".join(f" · ⚠ {why} on clean images: this difference cannot move there"
                         for why in saturated.values()))
if grid.q_value.isna().all() and run.status != "done":
    st.caption("q-values are computed once the run has finished, within each stated family of tests.")
elif run.status != "done" and grid.q_value.notna().any():
    st.caption(f"The run is {run.status}: its q-values cover only the cells that finished (an incomplete family); "
               "they are recomputed when the run completes.")
table = grid[["reconstructor", "level", "grp", "estimate", "ci_low", "ci_high", "p_value", "q_value", "family"]
             ].sort_values(["reconstructor", "level"], ascending=[True, run.level.higher_is_worse])  # mildest first
show(pd.DataFrame({
    "reconstructor": table.reconstructor, "level": [f"{lv:g}" for lv in table.level],
    "groups": [g or ("across groups" if "ratio" in gap else "max − min") for g in table.grp],
    "change [95 % CI]": [results.interval_text(e, lo, hi, signed=True)
                         for e, lo, hi in zip(table.estimate, table.ci_low, table.ci_high, strict=True)],
    "test": [results.test_text(p, q, f) or "descriptive: no test"
             for p, q, f in zip(table.p_value, table.q_value, table.family, strict=True)]}),
    hide_index=True, width="stretch")
download(table, f"{gap}-by-{attribute}", "dl_added")
tests = results.families(agg)
if len(tests):
    st.markdown("**Test families of this run** (fixed before any result; each p-value belongs to one)")
    show(tests, hide_index=True, width="stretch",
         column_config={"question": st.column_config.TextColumn(width="large")})

st.subheader("Does image quality predict the task?")
overall = agg[(agg.attribute == "all") & (agg.reconstructor != CLEAN)]
quality = run.quality
psnr = overall[(overall.metric == quality.metric) & (overall.label == quality.label)][
    ["reconstructor", "level", "estimate"]].rename(columns={"estimate": "x"})
tasks = {h.metric: h for h in run.tasks if h.metric in present}
left = right = st.container()  # chart, then the table at full width (its ρ column must be readable)
task = tasks[left.radio("Task", list(tasks), format_func=lambda t: tasks[t].axis, horizontal=True,
                        key=scoped("fair_task", key))]
scores = overall[(overall.metric == task.metric) & (overall.label == task.label)][
    ["reconstructor", "level", "estimate", "ci_low", "ci_high"]].rename(
    columns={"estimate": "y", "ci_low": "y_low", "ci_high": "y_high"})
scatter = cached_plot("quality_vs_task", psnr.merge(scores, on=["reconstructor", "level"]), quality.axis,
                      task.axis, f"Each cell: {quality.axis} against {task.axis}", colours=run.colours)
chart(left, f"{quality.metric}-vs-{task.metric}", scatter, width="stretch", run=run)
corr = data.correlations(key)
if corr.empty:
    right.info("Correlations are computed when the run has finished, from at least three reconstructed cells.")
else:
    show(results.correlation_table(corr, run.mildest_first(overall.level.unique())), right, hide_index=True,
         width="stretch")
    right.caption("\n\n".join(results.CORRELATION_NOTES))
    with right:
        download(corr.drop(columns="config_hash"), "quality-task-correlations", "dl_corr")
