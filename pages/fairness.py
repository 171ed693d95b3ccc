"""Fairness: per-group metrics with CIs (clean vs reconstructed), added bias across the sweep, PSNR vs task."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.common import cached_plot, chart, ensure_routed, page_run, query, sidebar_choices
from recon_core.store import CLEAN

ensure_routed("pages/fairness.py")

METRICS = {"tpr": "Sensitivity (TPR)", "fnr": "Underdiagnosis (FNR)", "fpr": "False-positive rate (FPR)",
           "ppv": "Precision (PPV)", "auroc": "AUROC", "ece": "Calibration error (ECE)",
           "psnr": "PSNR (dB)", "ssim": "SSIM", "nmse": "NMSE", "psnr_volume": "Volume PSNR (dB)",
           "nmse_volume": "Volume NMSE", "dice": "Tumour Dice", "hd95": "Tumour HD95 (pixels)"}
GAPS = {"eo_gap_added": "Equal-opportunity gap added", "eodd_added": "Equalized-odds gap added",
        "auroc_gap_added": "AUROC gap added", "fnr_gap_added": "FNR gap added", "ece_gap_added": "ECE gap added",
        "dice_gap_added": "Dice gap added", "dice_skewed_error_ratio_added": "Dice skewed error ratio added"}
QUALITY = ("psnr", "ssim", "nmse", "psnr_volume", "nmse_volume")  # against the clean image: none on the clean road
NO_LABEL = (*QUALITY, "dice", "hd95")  # one value per image, not per finding


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    st.download_button(f"Download {name} (CSV)", frame.to_csv(index=False).encode(), f"{name}.csv", "text/csv",
                       key=key)


st.title("Fairness")
run, key = page_run()
agg = query("aggregates", key)
if "ppv" not in set(agg.metric):
    st.info("This run has no per-group fairness results yet (cells are still landing, or it was stored by an "
            "older version: rebuild it to get them).")
    st.stop()

choice = sidebar_choices(agg, run)
level, attribute = choice.level, choice.attribute
labels = sorted(set(agg.loc[agg.metric == "tpr", "label"]) - {"mean"})
c1, c2, c3 = st.columns(3)
recon = c1.selectbox("Reconstructor", choice.reconstructors, key="fair_recon")
present = set(agg.metric)
metric = c2.selectbox("Metric", [m for m in METRICS if m in present], format_func=METRICS.get, key="fair_metric")
label = c3.selectbox("Finding", ["mean", *labels], key="fair_label") if metric not in NO_LABEL else ""

st.subheader(f"{METRICS[metric]} by {attribute}: clean images vs {recon} at {level:g}")
sel = agg[(agg.metric == metric) & (agg.label == label) & (agg.attribute == attribute)
          & (((agg.reconstructor == CLEAN) & (metric not in QUALITY))
             | ((agg.reconstructor == recon) & (agg.level == level)))]
if not ((agg.reconstructor == recon) & (agg.level == level)).any():
    st.warning(f"The store holds no results for {recon} at {level:g} {run.level_unit}; pick another level in "
               "the sidebar.")
chart(st, "group-metric", cached_plot("group_forest", sel, "", METRICS[metric]), width="stretch")
too_small = sel[sel.estimate.isna()]
if len(too_small):
    st.caption("No estimate (group too small or a single class): "
               + ", ".join(sorted({f"{g} (n={n})" for g, n in zip(too_small.grp, too_small.n, strict=True)})))
forest = sel[["reconstructor", "level", "grp", "estimate", "ci_low", "ci_high", "n", "n_pos"]]
download(forest, f"{metric}-by-{attribute}", "dl_forest")

st.subheader("Bias added by reconstruction across the sweep")
gap = st.radio("Gap", [g for g in GAPS if g in present], format_func=GAPS.get, horizontal=True, key="fair_gap")
gap_label = "" if gap.startswith("dice") else (label or "mean")
grid = agg[(agg.metric == gap) & (agg.label == gap_label) & (agg.attribute == attribute)]
heat = cached_plot("added_heatmap", grid, f"{GAPS[gap]} by {attribute} (reconstructed − clean, paired); "
                   "★ q < 0.05 after Benjamini–Hochberg")
chart(st, "added-bias", heat, width="stretch")
inherent = agg[(agg.reconstructor == CLEAN) & (agg.metric == gap.removesuffix("_added"))
               & (agg.label == gap_label) & (agg.attribute == attribute)]
if len(inherent):
    row = inherent.iloc[0]
    st.caption(f"Inherent (the classifier on clean images): {row.estimate:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]")
table = grid[["reconstructor", "level", "estimate", "ci_low", "ci_high", "p_value", "q_value"]].sort_values(
    ["reconstructor", "level"], ascending=[True, False])
st.dataframe(table.style.format({"level": "{:g}", "estimate": "{:+.3f}", "ci_low": "{:+.3f}", "ci_high": "{:+.3f}",
                                 "p_value": "{:.3f}", "q_value": "{:.3f}"}), hide_index=True, width="stretch")
download(table, f"{gap}-by-{attribute}", "dl_added")

st.subheader("Does image quality predict the task?")
overall = agg[(agg.attribute == "all") & (agg.reconstructor != CLEAN)]
psnr = overall[overall.metric == "psnr"][["reconstructor", "level", "estimate"]].rename(columns={"estimate": "x"})
tasks = {"dice": ("", "Tumour Dice")} if "dice" in present else {}
tasks["auroc"] = ("mean", "mean AUROC" if run.modality != "mri" else "grade AUROC")
left, right = st.columns([3, 2])
task = left.radio("Task", list(tasks), format_func=lambda t: tasks[t][1], horizontal=True, key="fair_task")
task_label, task_name = tasks[task]
scores = overall[(overall.metric == task) & (overall.label == task_label)][
    ["reconstructor", "level", "estimate", "ci_low", "ci_high"]].rename(
    columns={"estimate": "y", "ci_low": "y_low", "ci_high": "y_high"})
scatter = cached_plot("quality_vs_task", psnr.merge(scores, on=["reconstructor", "level"]), "PSNR (dB)",
                      task_name, f"Each cell: PSNR against {task_name}")
chart(left, f"psnr-vs-{task}", scatter, width="stretch")
corr = query("correlations", key)
if corr.empty:
    right.info("Correlations need at least three reconstructed cells.")
else:
    shown = corr.assign(pair=corr.x_metric + " ↔ " + corr.y_metric,
                        rho=[f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for e, lo, hi in
                             zip(corr.estimate, corr.ci_low, corr.ci_high, strict=True)])
    right.dataframe(shown[["pair", "attribute", "rho", "n_cells"]].rename(columns={"rho": "Spearman ρ [95 % CI]"}),
                    hide_index=True, width="stretch")
    right.caption("Across reconstructors × levels; intervals resample test images. A ρ near 1 would mean PSNR "
                  "ranks reconstructions the way the task does.")
    with right:
        download(corr.drop(columns="config_hash"), "quality-task-correlations", "dl_corr")
