"""Compare: one test image through several reconstructors at one level, side by side, with zoom kept in step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from pages.common import (
    cached_plot,
    chart,
    ensure_routed,
    get_replayer,
    page_run,
    query,
    reconstructed_cells,
    run_config_json,
    sidebar_choices,
)
from recon_core import paths
from recon_core.checkpoints import CheckpointError
from recon_core.cohorts import CohortError
from recon_core.metrics import image_quality
from recon_core.metrics.segmentation import dice
from recon_core.store import CLEAN

ensure_routed("pages/compare.py")


@st.cache_data(show_spinner="Reconstructing…", max_entries=128)
def cached_case(config_json: str, checkpoint_dir: str, image_id: str, reconstructor: str, level: float):
    return get_replayer(config_json, checkpoint_dir).case(image_id, reconstructor, level)


st.title("Compare reconstructors")
run, key = page_run()
cells = reconstructed_cells(key)

choice = sidebar_choices(query("aggregates", key), run)
chosen, level = choice.reconstructors, choice.level
clean_rows = query("image_rows", key, CLEAN, 0.0)
test_ids = clean_rows.image_id.tolist()
examples = sorted(query("examples", key, CLEAN, 0.0).image_id.unique())
image_id = st.selectbox("Test image", test_ids, index=test_ids.index(examples[0]) if examples else 0,
                        key="cmp_image")
st.caption("Reconstructors and the level come from the sidebar.")
missing = [r for r in chosen if not ((cells.reconstructor == r) & (cells.level == level)).any()]
if missing:
    st.warning(f"The store holds no results for {', '.join(missing)} at {level:g} {run.level_unit}.")
    chosen = [r for r in chosen if r not in missing]
    if not chosen:
        st.stop()

config_json, checkpoint_dir = run_config_json(key), str(paths.checkpoint_dir())
try:
    cases = {r: cached_case(config_json, checkpoint_dir, image_id, r, float(level)) for r in chosen}
except (CheckpointError, CohortError) as exc:
    st.warning(f"This image cannot be replayed here: {exc}")
    st.stop()

first = next(iter(cases.values()))
mri = first.mask_true is not None


def outlines(prediction: np.ndarray | None) -> dict:
    """MRI: true tumour outline (green) and the segmenter's on this image (red)."""
    return {"truth": first.mask_true, "prediction": prediction} if mri else {}


identity = ("none", "zero_filled")  # these return the degraded image, shown once
panels = [("clean", first.clean, "image", outlines(first.mask_clean)),
          (f"degraded ({level:g})", first.degraded, "image",
           outlines(next((c.mask_recon for r, c in cases.items() if r in identity), None)))]
panels += [(r, c.reconstructed, "image", outlines(c.mask_recon)) for r, c in cases.items() if r not in identity]
errors = [(f"|{r} − clean|", np.abs(c.reconstructed - c.clean), "error") for r, c in cases.items()]
grid = cached_plot("image_grid", panels + errors, columns=max(len(panels), len(errors)))
chart(st, "compare-images", grid, width="stretch")
st.caption("Zoom or pan one image and the others follow. Error maps share one scale (0–0.25).")

thresholds = query("thresholds", key)
clean_t = torch.from_numpy(first.clean[None, None])


def slice_dice(prediction: np.ndarray | None) -> dict:
    if not mri:
        return {}
    truth_t = torch.from_numpy(first.mask_true[None, None])
    return {"Dice": float(dice(torch.from_numpy(prediction[None, None]), truth_t)[0])}


rows = [{"road": "clean", "PSNR (dB)": np.nan, "SSIM": np.nan, **slice_dice(first.mask_clean),
         **{lb: first.clean_scores[j] for j, lb in enumerate(first.labels)}}]
for r, c in cases.items():
    quality = image_quality(torch.from_numpy(c.reconstructed[None, None]), clean_t)
    rows.append({"road": r, "PSNR (dB)": float(quality["psnr"][0]), "SSIM": float(quality["ssim"][0]),
                 **slice_dice(c.mask_recon), **{lb: c.recon_scores[j] for j, lb in enumerate(c.labels)}})
table = pd.DataFrame(rows)
truth = clean_rows.set_index("image_id").loc[image_id]


def mark(value: float, label: str) -> str:
    return f"{value:.2f} {'●' if value >= thresholds[label] else '○'}"


shown = table.copy()
for label in first.labels:
    shown[label] = [mark(v, label) for v in table[label]]
for column, digits in (("PSNR (dB)", 2), ("SSIM", 3)):  # the clean road is its own reference: no value
    shown[column] = ["—" if np.isnan(v) else f"{v:.{digits}f}" for v in table[column]]
if mri:
    shown["Dice"] = [f"{v:.3f}" for v in table["Dice"]]
st.dataframe(shown, hide_index=True, width="stretch")
st.caption("Classifier probability per finding; ● called at the fixed threshold, ○ not called. Truth: "
           + ", ".join(f"{lb} {'present' if truth[f'target:{lb}'] == 1 else 'absent'}" for lb in first.labels))
