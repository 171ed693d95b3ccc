"""Failure cases: which findings the reconstruction lost or invented, for whom, and why (attributions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import page_run, reconstructed_cells, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import exports, paths, plots, results, tables
from recon_core.cohorts import CohortError
from recon_core.explain import overlays
from recon_core.explain.attributions import attribute, methods_for
from recon_core.explain.cases import step, with_sample_range, worst_first
from recon_core.fairness.flips import flip_rates, flip_table
from recon_core.metrics import catalogue
from recon_core.models.checkpoints import CheckpointError
from recon_core.runner.replay import Case, CaseReplayer, scores_table
from recon_core.store import CLEAN

ensure_routed("pages/failures.py")
KIND_TEXT = {"lost": "finding lost (new false negative)", "invented": "finding invented (new false positive)",
             "recovered": "missed on clean, found on reconstruction", "corrected": "false alarm removed",
             "unchanged": "same decision"}
FLIP_COLOURS = {"lost": "#d62728", "invented": "#7f7f7f"}  # not a reconstructor's colour: these are kinds of change
METHOD_TEXT = {"integrated_gradients": "Integrated Gradients", "grad_cam": "Grad-CAM"}
METHOD_SHORT = {"integrated_gradients": "IG", "grad_cam": "Grad-CAM"}


@st.cache_data(show_spinner=False, max_entries=32)
def cached_flips(key: str, reconstructor: str, level: float, version: str) -> pd.DataFrame:
    thresholds = data.thresholds(key)
    return flip_table(data.image_rows(key, CLEAN, 0.0), data.image_rows(key, reconstructor, level),
                      sorted(thresholds), thresholds)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_rates(key: str, reconstructor: str, level: float, version: str, attribute_name: str,
                 label: str | None, seed: int, ci_level: float) -> pd.DataFrame:
    """Flip rates with CIs at the run's `ci_level`, keyed by the selection rather than by the (large) flip table."""
    return flip_rates(cached_flips(key, reconstructor, level, version), [attribute_name], ci_level=ci_level,
                      seed=seed, label=label)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_drops(key: str, reconstructor: str, level: float, version: str, metric: str) -> pd.DataFrame:
    """Segmentation tasks: images ranked by how far the segmenter's `metric` (Dice) fell on reconstruction."""
    clean = data.image_rows(key, CLEAN, 0.0)[["image_id", metric]].rename(columns={metric: "dice_clean"})
    recon = data.image_rows(key, reconstructor, level)
    table = recon.merge(clean, on="image_id").rename(columns={metric: "dice_recon"})
    labels = [c.removeprefix("target:") for c in table if c.startswith("target:")]
    table = table.assign(dice_drop=table.dice_clean - table.dice_recon, label=labels[0] if labels else "")
    return table.sort_values(["dice_drop", "image_id"], ascending=[False, True]).reset_index(drop=True)


@st.cache_data(show_spinner="Drawing the case's posterior samples again…", max_entries=64)
def cached_posterior(config_json: str, checkpoint_dir: str, image_id: str, reconstructor: str,
                     level: float) -> np.ndarray:
    """A case's posterior samples (n, H, W), replayed on the sweep's seeds (for an image not kept as an example)."""
    return data.get_replayer(config_json, checkpoint_dir).posterior(image_id, reconstructor, level)


def sample_images(key: str, image_id: str, reconstructor: str, level: float) -> dict[str, np.ndarray] | None:
    """The reported reconstruction, two single posterior samples and the per-pixel std of one case.

    Read from the stored examples where the image is one of them, else replayed; None (with a
    warning said) where the run's models cannot be loaded here.
    """
    stored = data.examples(key, reconstructor, level)
    stored = stored[stored.image_id == image_id].set_index("kind").pixels
    if {"reconstructed", "sample0", "sample1", "uncertainty"} <= set(stored.index):
        return {k: stored[k] for k in ("reconstructed", "sample0", "sample1", "uncertainty")}
    try:
        samples = cached_posterior(data.run_config_json(key), str(paths.checkpoint_dir()), image_id, reconstructor,
                                   level)
    except (CheckpointError, CohortError) as exc:
        st.warning(f"This case's samples cannot be drawn again here: {exc}")
        return None
    return {"reconstructed": samples.mean(0), "sample0": samples[0], "sample1": samples[1],
            "uncertainty": samples.std(0, ddof=1)}


def uncertain_calls(key: str, recon: str, level: float, unit: str) -> None:
    """Most uncertain calls: a sampler's cases ranked by how many posterior samples flip the diagnosis, and for a
    chosen case each sample's answers, two single samples and the spread beside the reconstruction."""
    rows = data.image_rows(key, recon, level)
    metric = next((m for m in ("sample_dice_flip", "sample_flip") if m in rows and rows[m].notna().any()), None)
    if metric is None:
        return
    st.subheader(f"Most uncertain calls — {recon}'s posterior samples at {level:g} {unit}")
    ranked = results.uncertain_cases(rows, metric)
    columns = ["image_id", metric, "posterior_std", "spread_error_rho", "interval_coverage", "sex", "age_band"]
    columns = [c for c in columns if c in ranked]
    show(ranked[columns].head(200), hide_index=True, width="stretch", height=220,
         column_config={catalogue.label("posterior_std"): st.column_config.NumberColumn(format="%.3g")})
    st.caption(f"{catalogue.label(metric)}: {catalogue.BY_NAME[metric].description}. Cases where the samples "
               "disagree most come first; the rate per group is on the Uncertainty & hallucinations page.")
    ids = ranked.image_id.head(200).tolist()
    by_id = dict(zip(ids, ranked[metric].head(200), strict=True))
    pick_key = scoped("fail_uncertain", key)
    if st.session_state.get(pick_key) not in by_id:
        st.session_state.pop(pick_key, None)
    image_id = st.selectbox("Uncertain case", ids, key=pick_key,
                            format_func=lambda i: f"{i} · {catalogue.label(metric).lower()} {by_id[i]:.2f}")
    row = ranked[ranked.image_id == image_id].iloc[0]
    drawn = data.sample_scores(key, recon, level, [image_id])
    reported = {c.removeprefix("score:"): float(row[c]) for c in ranked if c.startswith("score:")}
    if "dice" in set(drawn.name) and "dice" in row:
        reported["dice"] = float(row["dice"])
    show(results.draw_table(drawn, reported, data.thresholds(key)), hide_index=True, width="stretch")
    st.caption("Each posterior sample judged by the diagnostic model, beside its answer on the reported "
               "reconstruction (the samples' mean); a finding's call is its score against the run's operating "
               "threshold." + (" Dice is the segmenter's tumour overlap on each sample." if "dice" in reported else ""))
    images = sample_images(key, image_id, recon, level)
    if images is not None:
        panels = [(f"{recon} (mean of the samples)", images["reconstructed"], "image"),
                  ("one sample", images["sample0"], "image"), ("another sample", images["sample1"], "image"),
                  ("posterior std", images["uncertainty"], "error")]
        chart(st, "uncertain-case", cached_plot("image_grid", panels, columns=4), width="stretch", run=run,
              title=f"{image_id}: {recon} at {level:g} {unit}, its samples and their spread")


@st.cache_data(show_spinner="Replaying the case and computing attributions…", max_entries=64)
def cached_case(config_json: str, checkpoint_dir: str, image_id: str, reconstructor: str, level: float,
                label: str, method: str, explained: str) -> dict:
    """The replayed case and the attributions of the task model `explained` (the one whose answer changed)."""
    import torch

    r = data.get_replayer(config_json, checkpoint_dir)
    case = r.case(image_id, reconstructor, level)
    model = next(m for m in r.task_models if m.name == explained)
    images = torch.from_numpy(np.stack([case.clean, case.reconstructed])[:, None])
    return {"case": case, "maps": attribute(model, images, label if model.labels else None, method)}


GRID, GRID_COLUMNS = 12, 6  # the worst cases shown as pictures: two rows of six
WRONG_WAY = "change towards a wrong call"
SHOWN = 256  # workbench pictures are enlarged (pixel by pixel) to at least this many pixels wide


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(key: str, image_id: str, _replayer: CaseReplayer) -> bytes:
    """A case's clean image as a small PNG for the worst-cases grid (the run `key` names the replayer's run)."""
    return overlays.png(overlays.enlarge(overlays.gray_rgb(_replayer.clean_image(image_id)), 96))


def open_case(case_key: str, case_id: str) -> None:
    """A grid button's click: the case picker shows `case_id`."""
    st.session_state[case_key] = case_id


def move_case(case_key: str, case_ids: list[str], by: int) -> None:
    """Previous / next case (buttons and their keys K / J): the picker moves `by` places, wrapping round."""
    st.session_state[case_key] = step(case_ids, st.session_state.get(case_key, case_ids[0]), by)


def picture(where, rgb: np.ndarray, caption: str) -> None:
    """A workbench picture, enlarged pixel by pixel and sent as PNG (a few ms, where a plotly figure is ~50)."""
    where.image(overlays.png(overlays.enlarge(rgb, SHOWN)), caption=caption, width="stretch", output_format="PNG")


@st.fragment
def workbench(case: Case, maps: np.ndarray, recon: str, method: str, evidence: str) -> None:
    """The case's before/after wipe, its error map, and the attribution overlays with opacity and threshold.

    A fragment: moving one of its sliders redraws these pictures only, not the page around them.
    """
    clean, rebuilt = overlays.gray_rgb(case.clean), overlays.gray_rgb(case.reconstructed)
    s1, s2, s3 = st.columns(3)
    share = s1.slider("Before / after: reconstruction shown", 0, 100, 50, step=5, format="%d %%", key="fail_wipe",
                      help="The share of the width, from the right, that shows the reconstruction; the rest is the "
                           "clean image.")
    opacity = s2.slider("Attribution opacity", 0, 100, 60, step=5, format="%d %%", key="fail_opacity")
    threshold = s3.slider("Attribution threshold (quantile)", 0.0, 1.0, 0.8, step=0.05, key="fail_threshold",
                          help="Only the pixels above this quantile of the map are painted: 0.8 shows the top 20 %.")
    p1, p2, p3, p4 = st.columns(4)
    picture(p1, overlays.wipe(overlays.enlarge(clean, SHOWN), overlays.enlarge(rebuilt, SHOWN), share / 100),
            f"clean ← | → {recon}")
    error = np.abs(case.reconstructed - case.clean)
    picture(p2, overlays.error_map(case.clean, case.reconstructed, plots.LOOKUPS["error"]),
            f"|{recon} − clean|: black 0 → pale yellow ≥ {overlays.ERROR_TOP:g} (pixel values in [0, 1]); largest "
            f"here {error.max():.3f}, mean {error.mean():.3f}")
    for where, image, attribution, road in ((p3, case.clean, maps[0], "clean"),
                                            (p4, case.reconstructed, maps[1], recon)):
        picture(where, overlays.overlay(image, attribution, opacity / 100, threshold, plots.LOOKUPS["map"]),
                f"{method} on {road}")
    st.caption(f"{method} of {evidence}, painted (viridis: dark low, yellow high; each map scaled to its own "
               f"maximum) on the pixels above its {threshold:.2f} quantile — the top {1 - threshold:.0%} — at "
               f"{opacity} % opacity.")


def spread_panel(case: Case, sampled: dict[str, np.ndarray], stats: pd.DataFrame) -> None:
    """A sampler's posterior std map beside its error, and how the two relate on this image."""
    std = sampled["uncertainty"]
    summary = overlays.spread_vs_error(std, case.clean, sampled["reconstructed"])
    top = float(std.max()) or 1.0
    left, right = st.columns(2)
    picture(left, overlays.colourize(std, top, plots.LOOKUPS["error"]),
            f"posterior std: black 0 → pale yellow {top:.3f} (its largest here)")
    stored = stats.spread_error_rho.iloc[0] if "spread_error_rho" in stats and len(stats) else np.nan
    right.markdown("**Does the spread say where the error is?**")
    right.markdown(
        f"- The {summary.top_share:.0%} of the body's pixels with the highest spread hold "
        f"**{summary.error_share:.0%}** of its error (|mean of the samples − clean|): {summary.lift:.1f}× their "
        "share (1× if the spread says nothing about the error).\n"
        f"- Spread–error rank correlation on this image: **ρ = {summary.rho:.2f}**"
        + (f" (stored by the run: {stored:.2f})." if stored == stored else ".")
        + "\n- Mean posterior std: "
        + (f"{stats.posterior_std.iloc[0]:.3g}." if "posterior_std" in stats and len(stats) else f"{std.mean():.3g}."))


st.title("Failure cases")
run = page_run()
key = run.key
version = data.version()
cells = reconstructed_cells(key)

agg = data.aggregates(key)
choice = sidebar_choices(agg, run)
level = choice.level
c1, c2 = st.columns(2)
recon = c1.selectbox("Reconstructor", choice.reconstructors, key=scoped("fail_recon", key))
if not ((cells.reconstructor == recon) & (cells.level == level)).any():
    st.warning(f"The store holds no results for {recon} at {level:g} {run.level.unit}; pick another level in "
               "the sidebar.")
    st.stop()
table = cached_flips(key, recon, float(level), version)
labels = sorted(table.label.unique())
label = c2.selectbox("Finding", ["all", *labels], key=scoped("fail_label", key))
attribute_name = choice.attribute if all(p in table for p in choice.attribute.split("×")) else "sex"

st.subheader(f"How often findings change, by {attribute_name} — {recon} at {level:g} {run.level.unit}")
config = data.run_config(key) or {}
rates = cached_rates(key, recon, float(level), version, attribute_name, None if label == "all" else label,
                     int(config.get("seed", 0)), data.ci_level(key))
shown = rates[rates.attribute != "all"].rename(columns={"kind": "reconstructor", "rate": "estimate", "of": "n"})
chart(st, "flip-rates", cached_plot("group_forest", shown,
                                    "Share of present findings lost / absent findings invented "
                                    f"({exports.ci_text(data.ci_level(key))})", "rate",
                                    colours=FLIP_COLOURS, legend_title="finding"), width="stretch", run=run)
show(tables.flip_rate_rows(rates), hide_index=True, width="stretch")
if recon in results.samplers(agg):
    uncertain_calls(key, recon, float(level), run.level.unit)

segmentation = next((m for m in catalogue.SEGMENTATION if m in set(agg.metric)), None)
segmented = segmentation is not None
rank = "flips"
if segmented:
    st.caption(f"Decisions here are per image, at the operating threshold chosen per {run.unit}.")
    rank = st.radio("Rank cases by", ["dice", "flips"], horizontal=True, key="fail_rank",
                    format_func={"dice": "largest Dice drop (segmentation)", "flips": "decision flips"}.get)
groups = ["all", *sorted(table[attribute_name].astype(str).unique())]
f1, f2 = st.columns(2)
group = f1.selectbox("Group", groups, key=scoped("fail_group", key))
if rank == "dice":
    view = cached_drops(key, recon, float(level), version, segmentation)
    columns = ["image_id", "label", "dice_clean", "dice_recon", "dice_drop", "sex", "age_band", "psnr"]
    order = "the largest Dice drop (the segmenter's Dice on the clean slice − on the reconstruction) first"
else:
    only_flips = f2.toggle("Only lost or invented findings", value=True, key="fail_only")
    view = table if label == "all" else table[table.label == label]
    if only_flips:
        view = view[view.kind.isin(["lost", "invented"])]
    view = worst_first(view)
    columns = ["image_id", "label", "kind", "target", "clean_score", "recon_score", "change", "wrong_way", "sex",
               "age_band", "psnr"]
    order = ("the largest score change in the wrong direction first (down for a present finding, up for an "
             "absent one: towards losing or inventing it)")
if group != "all":
    view = view[view[attribute_name].astype(str) == group]
config_json, checkpoint_dir = data.run_config_json(key), str(paths.checkpoint_dir())
try:
    replayer = data.get_replayer(config_json, checkpoint_dir)
    unplayable = None
except (CheckpointError, CohortError) as exc:
    replayer, unplayable = None, exc

options = view.head(200)
# A case is picked by its id (image and finding), so a changed filter never swaps the case shown.
case_ids = [f"{i} · {lb}" for i, lb in zip(options.image_id, options.label, strict=True)]
by_id = dict(zip(case_ids, range(len(options)), strict=True))
case_key = scoped("fail_case", key)
if st.session_state.get(case_key) not in by_id:  # the case left the list: start from its first case
    st.session_state.pop(case_key, None)


def describe(case_id: str) -> str:
    """A case's label in the picker: image, finding and what changed (or the Dice drop)."""
    i = by_id[case_id]
    if rank == "dice":
        return f"{options.image_id.iloc[i]} · Dice {options.dice_clean.iloc[i]:.2f} → {options.dice_recon.iloc[i]:.2f}"
    return f"{options.image_id.iloc[i]} · {options.label.iloc[i]} · {KIND_TEXT[options.kind.iloc[i]]}"


def short(case_id: str) -> str:
    """A case's label on its grid button: image, finding, and the score (or Dice) before → after."""
    i = by_id[case_id]
    if rank == "dice":
        return f"{options.image_id.iloc[i]} · Dice {options.dice_clean.iloc[i]:.2f} → {options.dice_recon.iloc[i]:.2f}"
    return (f"{options.image_id.iloc[i]} · {options.label.iloc[i]} {options.kind.iloc[i]} · "
            f"{options.clean_score.iloc[i]:.2f} → {options.recon_score.iloc[i]:.2f}")


st.subheader(f"Worst cases — {recon} at {level:g} {run.level.unit}")
if view.empty:
    st.info("No case matches these filters.")
    st.stop()
worst = case_ids[:GRID]
st.caption(f"The {len(worst)} worst of {len(view)} cases under these filters (reconstructor, level, finding, "
           f"group), {order}; each shows its clean image. Click one to open it below.")
for start in range(0, len(worst), GRID_COLUMNS):
    for column, case_id in zip(st.columns(GRID_COLUMNS), worst[start:start + GRID_COLUMNS], strict=False):
        if replayer is not None:
            column.image(thumbnail(key, options.image_id.iloc[by_id[case_id]], replayer), width="stretch",
                         output_format="PNG")
        column.button(short(case_id), key=f"fail_open_{by_id[case_id]}", on_click=open_case,
                      args=(case_key, case_id), width="stretch", type="tertiary", wrap=True)

st.markdown(f"**Every case ({len(view)})**, {order.split(' (')[0]}")
show(view[columns].rename(columns={"wrong_way": WRONG_WAY}), hide_index=True, width="stretch", height=260)
st.download_button("Download cases (CSV)", lambda: view[columns].to_csv(index=False).encode(),  # built on click
                   "failure-cases.csv", "text/csv", key="dl_cases", on_click="ignore")

st.subheader("Why did the decision change?")
b1, b2, b3 = st.columns([1, 1, 4], vertical_alignment="bottom")
b1.button("Previous case", key="fail_previous", shortcut="K", on_click=move_case, args=(case_key, case_ids, -1),
          icon=":material/arrow_back:")
b2.button("Next case", key="fail_next", shortcut="J", on_click=move_case, args=(case_key, case_ids, 1),
          icon=":material/arrow_forward:")
row = options.iloc[by_id[b3.selectbox("Case", case_ids, key=case_key, format_func=describe)]]
if replayer is None:
    st.warning(f"This case cannot be replayed here: {unplayable}")
    st.stop()
# A Dice drop is the segmenter's answer changing; a decision flip is the classifier's.
explained = next(m for m in replayer.task_models if not m.labels) if rank == "dice" else replayer.classifier
methods = methods_for(explained)
method = st.radio("Attribution", methods, horizontal=True, key=scoped("fail_method", explained.name),
                  format_func=METHOD_TEXT.get)
try:
    result = cached_case(config_json, checkpoint_dir, row.image_id, recon, float(level), row.label, method,
                         explained.name)
except (CheckpointError, CohortError) as exc:
    st.warning(f"This case cannot be replayed here: {exc}")
    st.stop()
case, maps = result["case"], result["maps"]
sampled = sample_images(key, row.image_id, recon, float(level)) if recon in results.samplers(agg) else None
if explained.labels:
    target = row.get("target", row.get(f"target:{row.label}"))
    evidence = (f"the classifier's evidence for **{row.label}** (truth: {'present' if target == 1 else 'absent'})")
else:
    evidence = "the segmenter's evidence (its mean tumour probability on the slice)"
workbench(case, maps, recon, METHOD_TEXT[method], evidence)

image_stats = data.image_rows(key, recon, float(level))
image_stats = image_stats[image_stats.image_id == row.image_id]
if sampled is not None:
    spread_panel(case, sampled, image_stats)
scores = scores_table(case)
if recon in results.samplers(agg):
    scores = with_sample_range(scores, data.sample_scores(key, recon, float(level), [row.image_id]))
st.markdown("**Scores on each road**")
show(scores.style.format(precision=2), hide_index=True)
st.caption("The diagnostic model's score per finding on the clean image and on the reconstruction"
           + ("; a sampler's samples' lowest and highest score for the same finding" if "samples" in scores else "")
           + ". A finding is called where its score reaches the run's operating threshold.")

st.markdown("**Side by side, with the degraded input** (the panels zoom together)")
error = np.abs(case.reconstructed - case.clean)
lines_clean = {"truth": case.mask_true, "prediction": case.mask_clean} if segmented else {}
lines_recon = {"truth": case.mask_true, "prediction": case.mask_recon} if segmented else {}
short_method = METHOD_SHORT[method]
panels = [("clean", case.clean, "image", lines_clean), (f"degraded ({level:g})", case.degraded, "image"),
          (recon, case.reconstructed, "image", lines_recon), (f"|{recon} − clean|", error, "error"),
          (f"{short_method} · clean", maps[0], "map"), (f"{short_method} · {recon}", maps[1], "map"),
          (f"|Δ {short_method}|", np.abs(maps[1] - maps[0]), "map")]
chart(st, "case-attributions", cached_plot("image_grid", panels, columns=4), width="stretch", run=run,
      title=f"{case.image_id}: {recon} at {level:g} {run.level.unit} beside clean, with {METHOD_TEXT[method]} maps")
if explained.labels:
    st.caption(f"{METHOD_TEXT[method]} of {evidence}; each map is scaled to its own maximum."
               + (" Green: true outline; red: the segmenter's." if segmented else ""))
else:
    st.caption(f"{METHOD_TEXT[method]} of {evidence}; each map is scaled to its own maximum. Green: true outline; "
               "red: the segmenter's.")
