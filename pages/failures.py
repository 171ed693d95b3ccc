"""Failure cases: which findings the reconstruction lost or invented, for whom, and why (attributions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import page_run, reconstructed_cells, sidebar_choices
from recon_core import paths
from recon_core.cohorts import CohortError
from recon_core.explain.attributions import attribute
from recon_core.fairness.flips import flip_rates, flip_table
from recon_core.metrics import catalogue
from recon_core.models.checkpoints import CheckpointError
from recon_core.runner.replay import scores_table
from recon_core.store import CLEAN

ensure_routed("pages/failures.py")
KIND_TEXT = {"lost": "finding lost (new false negative)", "invented": "finding invented (new false positive)",
             "recovered": "missed on clean, found on reconstruction", "corrected": "false alarm removed",
             "unchanged": "same decision"}


@st.cache_data(show_spinner=False, max_entries=32)
def cached_flips(key: str, reconstructor: str, level: float, version: str) -> pd.DataFrame:
    thresholds = data.thresholds(key)
    return flip_table(data.image_rows(key, CLEAN, 0.0), data.image_rows(key, reconstructor, level),
                      sorted(thresholds), thresholds)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_rates(key: str, reconstructor: str, level: float, version: str, attribute_name: str,
                 label: str | None, seed: int) -> pd.DataFrame:
    """Flip rates with CIs, keyed by the selection rather than by the (large) flip table."""
    return flip_rates(cached_flips(key, reconstructor, level, version), [attribute_name], seed=seed, label=label)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_drops(key: str, reconstructor: str, level: float, version: str, metric: str) -> pd.DataFrame:
    """Segmentation tasks: images ranked by how far the segmenter's `metric` (Dice) fell on reconstruction."""
    clean = data.image_rows(key, CLEAN, 0.0)[["image_id", metric]].rename(columns={metric: "dice_clean"})
    recon = data.image_rows(key, reconstructor, level)
    table = recon.merge(clean, on="image_id").rename(columns={metric: "dice_recon"})
    labels = [c.removeprefix("target:") for c in table if c.startswith("target:")]
    table = table.assign(dice_drop=table.dice_clean - table.dice_recon, label=labels[0] if labels else "")
    return table.sort_values(["dice_drop", "image_id"], ascending=[False, True]).reset_index(drop=True)


@st.cache_data(show_spinner="Replaying the case and computing attributions…", max_entries=64)
def cached_case(config_json: str, checkpoint_dir: str, image_id: str, reconstructor: str, level: float,
                label: str, method: str) -> dict:
    import torch

    r = data.get_replayer(config_json, checkpoint_dir)
    case = r.case(image_id, reconstructor, level)
    j = case.labels.index(label)
    maps = attribute(r.classifier.net, torch.from_numpy(np.stack([case.clean, case.reconstructed])[:, None]), j, method)
    return {"case": case, "maps": maps}


st.title("Failure cases")
run = page_run()
key = run.key
version = data.store().version()
cells = reconstructed_cells(key)

agg = data.aggregates(key)
choice = sidebar_choices(agg, run)
level = choice.level
c1, c2 = st.columns(2)
recon = c1.selectbox("Reconstructor", choice.reconstructors, key="fail_recon")
if not ((cells.reconstructor == recon) & (cells.level == level)).any():
    st.warning(f"The store holds no results for {recon} at {level:g} {run.level.unit}; pick another level in "
               "the sidebar.")
    st.stop()
table = cached_flips(key, recon, float(level), version)
labels = sorted(table.label.unique())
label = c2.selectbox("Finding", ["all", *labels], key="fail_label")
attribute_name = choice.attribute if all(p in table for p in choice.attribute.split("×")) else "sex"

st.subheader(f"How often findings change, by {attribute_name} — {recon} at {level:g} {run.level.unit}")
config = data.run_config(key) or {}
rates = cached_rates(key, recon, float(level), version, attribute_name, None if label == "all" else label,
                     int(config.get("seed", 0)))
shown = rates[rates.attribute != "all"].rename(columns={"kind": "reconstructor", "rate": "estimate", "of": "n"})
chart(st, "flip-rates", cached_plot("group_forest", shown,
                            "Share of present findings lost / absent findings invented (95 % CI)", "rate"),
                width="stretch")
st.dataframe(rates.rename(columns={"grp": "group"}), hide_index=True, width="stretch")

segmentation = next((m for m in catalogue.SEGMENTATION if m in set(agg.metric)), None)
segmented = segmentation is not None
rank = "flips"
if segmented:
    st.caption(f"Decisions here are per image, at the operating threshold chosen per {run.unit}.")
    rank = st.radio("Rank cases by", ["dice", "flips"], horizontal=True, key="fail_rank",
                    format_func={"dice": "largest Dice drop (segmentation)", "flips": "decision flips"}.get)
st.subheader("Cases, largest Dice drop first" if rank == "dice" else "Cases, flips first")
groups = ["all", *sorted(table[attribute_name].astype(str).unique())]
f1, f2 = st.columns(2)
group = f1.selectbox("Group", groups, key="fail_group")
if rank == "dice":
    view = cached_drops(key, recon, float(level), version, segmentation)
    columns = ["image_id", "label", "dice_clean", "dice_recon", "dice_drop", "sex", "age_band", "psnr"]
else:
    only_flips = f2.toggle("Only lost or invented findings", value=True, key="fail_only")
    view = table if label == "all" else table[table.label == label]
    if only_flips:
        view = view[view.kind.isin(["lost", "invented"])]
    columns = ["image_id", "label", "kind", "target", "clean_score", "recon_score", "change", "sex", "age_band",
               "psnr"]
if group != "all":
    view = view[view[attribute_name].astype(str) == group]
st.dataframe(view[columns], hide_index=True, width="stretch", height=260)
st.download_button("Download cases (CSV)", lambda: view[columns].to_csv(index=False).encode(),  # built on click
                   "failure-cases.csv", "text/csv", key="dl_cases", on_click="ignore")
if view.empty:
    st.info("No case matches these filters.")
    st.stop()

st.subheader("Why did the decision change?")
options = view.head(200)


def describe(i: int) -> str:
    if rank == "dice":
        return f"{options.image_id.iloc[i]} · Dice {options.dice_clean.iloc[i]:.2f} → {options.dice_recon.iloc[i]:.2f}"
    return f"{options.image_id.iloc[i]} · {options.label.iloc[i]} · {KIND_TEXT[options.kind.iloc[i]]}"


pick = st.selectbox("Case", range(len(options)), key="fail_case", format_func=describe)
row = options.iloc[pick]
method = st.radio("Attribution", ["integrated_gradients", "grad_cam"], horizontal=True, key="fail_method",
                  format_func=lambda m: {"integrated_gradients": "Integrated Gradients", "grad_cam": "Grad-CAM"}[m])
config_json = data.run_config_json(key)
try:
    result = cached_case(config_json, str(paths.checkpoint_dir()), row.image_id, recon, float(level), row.label,
                         method)
except (CheckpointError, CohortError) as exc:
    st.warning(f"This case cannot be replayed here: {exc}")
    st.stop()
case, maps = result["case"], result["maps"]
error = np.abs(case.reconstructed - case.clean)
lines_clean = {"truth": case.mask_true, "prediction": case.mask_clean} if segmented else {}
lines_recon = {"truth": case.mask_true, "prediction": case.mask_recon} if segmented else {}
panels = [("clean", case.clean, "image", lines_clean), (f"degraded ({level:g})", case.degraded, "image"),
          (recon, case.reconstructed, "image", lines_recon), (f"|{recon} − clean|", error, "error"),
          (f"{method} on clean", maps[0], "map"), (f"{method} on {recon}", maps[1], "map"),
          ("difference of maps", np.abs(maps[1] - maps[0]), "map")]
chart(st, "case-attributions", cached_plot("image_grid", panels, columns=4), width="stretch")
target = row.get("target", row.get(f"target:{row.label}"))
truth_text = "present" if target == 1 else "absent"
st.caption(f"Attribution for **{row.label}**; each map is scaled to its own maximum. Truth: {truth_text}."
           + (" Green: true outline; red: the segmenter's." if segmented else ""))
st.dataframe(scores_table(case).style.format({"clean": "{:.2f}", "reconstructed": "{:.2f}"}), hide_index=True)
