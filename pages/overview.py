"""Overview: PSNR and task curves against noise, subgroup gaps with CIs, and example images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages.common import attribute_label, cached_plot, chart, ensure_routed, page_run, query, sidebar_choices, store
from recon_core.report import build_report
from recon_core.store import CLEAN

ensure_routed("pages/overview.py")

st.title("Overview")
run, key = page_run()
version = store().version()
agg = query("aggregates", key)


def watch_for_new_cells() -> None:
    """While a build runs, redraw the page as soon as another cell lands."""
    if store().version() != version:
        st.rerun(scope="app")


if run.status == "running" and st.sidebar.toggle("Auto-refresh while the build runs", value=True, key="autorefresh"):
    st.fragment(watch_for_new_cells, run_every=3.0)()
if agg.empty:
    st.info(f"Run {run['name']} has no finished cells yet ({run.status}). This page fills in as cells land.")
    st.stop()

level_label = f"{run.level_name} ({run.level_unit})"
choice = sidebar_choices(agg, run)
chosen, levels, level, attribute = choice.reconstructors, choice.levels, choice.level, choice.attribute
attr_text = attribute_label(attribute).lower()
if run.status == "running":
    st.caption(
        f"Run status: **running** — showing the {run.cells_done} cells finished so far; "
        "this page refreshes as more land."
    )
elif run.status != "done":
    st.caption(f"Run status: **{run.status}** — {run.message or ''}")

# All this page draws, in one pass over the run's aggregates; categories make the many filters below and the
# hashing of each chart's input (its cache key) cheap.
agg = agg[agg.label.isin(["", "mean"]) & agg.attribute.isin(["all", attribute])].drop(columns="config_hash").astype(
    {c: "category" for c in ("reconstructor", "metric", "label", "attribute", "grp")})
view = agg[agg.reconstructor.isin(chosen) & agg.level.isin(levels)]
clean = agg[agg.reconstructor == CLEAN]


def overall(frame: pd.DataFrame, metric: str, label: str = "") -> pd.DataFrame:
    return frame[(frame.metric == metric) & (frame.label == label) & (frame.attribute == "all")]


mri = run.modality == "mri"
curves = [("psnr", "", "Image quality: PSNR", "PSNR (dB)")]
if mri:
    curves += [("dice", "", "Task: tumour Dice (mean per patient)", "Dice"),
               ("auroc", "mean", "Task: grade AUROC (patient = median slice score)", "AUROC")]
else:
    curves += [("auroc", "mean", "Task: mean AUROC", "mean AUROC")]
for column, (metric, label, title, y_label) in zip(st.columns(len(curves)), curves, strict=True):
    base = overall(clean, metric, label)
    chart(column, f"{metric}-vs-level",
          cached_plot("metric_vs_level", overall(view, metric, label), metric, title, y_label, level_label,
                      base.iloc[0] if len(base) else None, higher_is_worse=mri),
          width="stretch")
unit = "patients (all of a patient's slices together)" if mri else "test images"
st.caption(
    f"Shaded bands and brackets are 95 % bootstrap intervals over {unit}. "
    "Dashed lines are the same diagnostic models on the clean images. Each chart's camera icon saves a PNG."
)

st.header(f"Subgroups by {attr_text} at {level:g} {run.level_unit}")
st.caption("Change the level in focus and the attribute in the sidebar; they hold on every page.")
at_level = pd.concat([clean, agg[agg.reconstructor.isin(chosen) & (agg.level == level)]])
if mri:
    a, b = st.columns(2)
    dice = at_level[(at_level.metric == "dice") & (at_level.attribute == attribute)]
    chart(a, "dice-by-group", cached_plot("group_forest", dice, f"Tumour Dice by {attr_text} (mean per patient)",
                                          "Dice"), width="stretch")
    dice_gaps = at_level[at_level.metric.isin(["dice_gap"]) & (at_level.attribute == attribute)]
    chart(b, "dice-gap", cached_plot("gap_bars", dice_gaps, f"Dice gap (max − min) by {attr_text} at {level:g}"),
          width="stretch")
a, b = st.columns(2)
tpr = at_level[(at_level.metric == "tpr") & (at_level.label == "mean") & (at_level.attribute == attribute)]
task = "high grade" if mri else "mean over findings"
chart(a, "tpr-by-group",
      cached_plot("group_forest", tpr, f"Sensitivity (TPR, {task}) by {attr_text}", "TPR at the fixed threshold"),
      width="stretch")
gaps = at_level[
    at_level.metric.isin(["eo_gap", "eodd"]) & (at_level.label == "mean") & (at_level.attribute == attribute)
]
gap_title = f"Fairness gaps by {attr_text} at {level:g}"
chart(b, "fairness-gaps", cached_plot("gap_bars", gaps, gap_title), width="stretch")
curves = [("eo_gap", "mean", f"Equal-opportunity gap by {attr_text}", "max − min TPR")]
if mri:
    curves.insert(0, ("dice_gap", "", f"Dice gap by {attr_text}", "max − min Dice"))
for column, (metric, label, title, y_label) in zip(st.columns(len(curves)), curves, strict=True):
    curve = view[(view.metric == metric) & (view.label == label) & (view.attribute == attribute)]
    base = clean[(clean.metric == metric) & (clean.label == label) & (clean.attribute == attribute)]
    chart(column, f"{metric}-curve", cached_plot("metric_vs_level", curve, metric, title, y_label, level_label,
                                                 base.iloc[0] if len(base) else None, higher_is_worse=mri),
          width="stretch")

added = at_level[
    at_level.metric.isin(["auroc_added", "eo_gap_added", "eodd_added", "dice_added", "dice_gap_added",
                          "dice_skewed_error_ratio_added"])
    & at_level.label.isin(["mean", ""])
    & (at_level.attribute.isin(["all", attribute]))
    & (at_level.grp.isin(["all", ""]))
]
table = added.assign(
    value=[
        f"{e:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        for e, lo, hi in zip(added.estimate, added.ci_low, added.ci_high, strict=True)
    ],
    excludes_zero=(added.ci_low > 0) | (added.ci_high < 0),
)[["reconstructor", "metric", "value", "excludes_zero"]]
st.subheader("Added by reconstruction (reconstructed − clean, paired)")
st.dataframe(table.rename(columns={"excludes_zero": "95 % CI excludes 0"}), hide_index=True, width="stretch")
small = at_level[(at_level.attribute == attribute) & at_level.estimate.isna() & (at_level.metric == "tpr")]
if len(small):
    st.caption(
        "Groups without an estimate (too small or a single class): "
        + ", ".join(sorted({f"{g} (n={n})" for g, n in zip(small.grp, small.n, strict=True)}))
    )

st.download_button(
    "Download a report of this selection (HTML, opens offline)",
    lambda: build_report(store(), key, chosen, levels, attribute, float(level)).encode(),  # built only on click
    f"tandem-report-{key[:8]}.html", "text/html", key="dl_report", on_click="ignore")

st.header(f"Example images at {level:g} {run.level_unit}")
clean_examples = query("examples", key, CLEAN, 0.0)
if clean_examples.empty:
    st.info("No example images stored for this run.")
    st.stop()
image_ids = sorted(clean_examples.image_id.unique())
if st.session_state.get("example") not in image_ids:
    st.session_state.pop("example", None)
image_id = st.selectbox("Test image", image_ids, key="example")
mine = clean_examples[clean_examples.image_id == image_id].set_index("kind").pixels


def outlines(kinds: pd.Series) -> dict:
    """MRI: the true tumour (green) and the segmenter's (red) outlines, when stored."""
    return {name: kinds[kind] for name, kind in (("truth", "mask_true"), ("prediction", "mask_pred"))
            if kind in kinds} if mri else {}


clean_pixels = mine["clean"]
truth = {"truth": mine["mask_true"]} if "mask_true" in mine else {}
panels = [("clean", clean_pixels, "image", outlines(mine))]
errors = []
for recon in chosen:
    ex = query("examples", key, recon, float(level))
    ex = ex[ex.image_id == image_id].set_index("kind").pixels
    if ex.empty:
        continue
    if len(panels) == 1:
        panels.append((f"degraded ({level:g})", ex["degraded"], "image"))
    pixels = ex["reconstructed"]
    if recon not in ("none", "zero_filled"):  # these return the degraded image, already shown
        panels.append((recon, pixels, "image", truth | outlines(ex.drop(index="mask_true", errors="ignore"))))
    elif mri:
        panels[1] = (*panels[1][:3], truth | outlines(ex))
    errors.append((f"|{recon} − clean|", np.abs(pixels - clean_pixels), "error"))
    if "uncertainty" in ex:  # several posterior samples were drawn: their per-pixel spread
        errors.append((f"{recon}: posterior std", ex["uncertainty"], "error"))
if mri:
    st.caption("Green: the true tumour outline; red: the segmenter's, on each image.")
chart(st, "example-images", cached_plot("image_grid", panels + errors, columns=len(panels)), width="stretch")
scores = query("image_scores", key, image_id)
scores = scores[(scores.reconstructor == CLEAN) | (scores.reconstructor.isin(chosen) & (scores.level == level))]
if len(scores):
    wide = scores.pivot_table(index="label", columns="reconstructor", values="score")
    truth = scores.drop_duplicates("label").set_index("label").target
    st.caption("Classifier probability per finding (truth: 1 present, 0 absent)")
    st.dataframe(wide.assign(truth=truth), width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in [*wide, "truth"]})
