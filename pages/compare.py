"""Compare: one test image through several reconstructors at one level, or one at several levels.

Side by side with zoom kept in step, each road's PSNR/SSIM and the diagnostic model's outputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import page_run, reconstructed_cells, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import paths
from recon_core.cohorts import CohortError
from recon_core.metrics.catalogue import label as metric_label
from recon_core.metrics.image_quality import image_quality
from recon_core.metrics.segmentation import dice
from recon_core.models.checkpoints import CheckpointError
from recon_core.runner.replay import Case
from recon_core.store import CLEAN

ensure_routed("pages/compare.py")


@st.cache_data(show_spinner="Reconstructing…", max_entries=128)
def cached_case(config_json: str, checkpoint_dir: str, image_id: str, reconstructor: str, level: float):
    return data.get_replayer(config_json, checkpoint_dir).case(image_id, reconstructor, level)


st.title("Compare reconstructors")
run = page_run()
key = run.key
cells = reconstructed_cells(key)

choice = sidebar_choices(data.aggregates(key), run)
clean_rows = data.image_rows(key, CLEAN, 0.0)
test_ids = clean_rows.image_id.tolist()
examples = sorted(data.examples(key, CLEAN, 0.0).image_id.unique())
image_key = scoped("cmp_image", key)
image_id = st.selectbox("Test image", test_ids, key=image_key,
                        **({} if image_key in st.session_state or not examples
                           else {"index": test_ids.index(examples[0])}))
across_levels = st.radio("Side by side", ["reconstructors at the level in focus", "one reconstructor across levels"],
                         horizontal=True, key="cmp_mode") == "one reconstructor across levels"
if across_levels:
    recon = st.selectbox("Reconstructor", choice.reconstructors, key=scoped("cmp_recon", key))
    focus = run.mildest_first(choice.levels)
    picked = st.multiselect("Levels", focus, default=[focus[0], focus[-1]] if len(focus) > 1 else focus,
                            format_func=lambda v: f"{v:g} {run.level.unit}", key=scoped("cmp_levels", key))
    roads = [(f"{recon} at {lv:g}", recon, float(lv)) for lv in run.mildest_first(picked)]
    st.caption("Levels from the sidebar's curve levels, mildest first, one row each; the image and its noise "
               "seed stay the same.")
else:
    roads = [(r, r, choice.level) for r in choice.reconstructors]
    st.caption("Reconstructors and the level come from the sidebar.")
held = {(r, float(lv)) for r, lv in zip(cells.reconstructor, cells.level, strict=True)}
missing = [name for name, r, lv in roads if (r, lv) not in held]
if missing:
    st.warning(f"The store holds no results for {', '.join(missing)}"
               + ("" if across_levels else f" at {choice.level:g} {run.level.unit}") + ".")
    roads = [road for road in roads if road[0] not in missing]
if not roads:
    st.info("Pick at least one reconstructor and level that the store holds.")
    st.stop()

config_json, checkpoint_dir = data.run_config_json(key), str(paths.checkpoint_dir())
try:
    cases = {name: cached_case(config_json, checkpoint_dir, image_id, r, lv) for name, r, lv in roads}
except (CheckpointError, CohortError) as exc:
    st.warning(f"This image cannot be replayed here: {exc}")
    st.stop()

first = next(iter(cases.values()))
segmented = first.mask_true is not None


def outlines(prediction: np.ndarray | None) -> dict:
    """Segmentation tasks: the true outline (green) and the segmenter's on this image (red)."""
    return {"truth": first.mask_true, "prediction": prediction} if segmented else {}


COLUMNS = 4  # at most this many images a row: thumbnails stay readable, titles never overlap


def error_panel(name: str, case: Case) -> tuple:
    """A road's |reconstructed − clean| map."""
    return (f"|{name} − clean|", np.abs(case.reconstructed - case.clean), "error")


def degraded_panel(lv: float, at_level: list[tuple[str, Case]]) -> tuple:
    """The degraded image of one level, with the outline of a method that returns it unchanged."""
    return (f"degraded ({lv:g})", at_level[0][1].degraded, "image",
            outlines(next((c.mask_recon for r, c in at_level if r in run.returns_degraded), None)))


def rows_of(panels: list[tuple]) -> list[tuple]:
    """Pads a run of panels to whole rows, so the next run starts on a row of its own."""
    return panels + [("", None, "blank")] * (-len(panels) % COLUMNS)


clean_panel = ("clean", first.clean, "image", outlines(first.mask_clean))
if across_levels:  # one row per level: degraded, reconstructed, error; the clean image heads the first row
    panels = rows_of([clean_panel])
    for name, r, lv in roads:
        case = cases[name]
        shown = [] if r in run.returns_degraded else [(name, case.reconstructed, "image", outlines(case.mask_recon))]
        panels += rows_of([degraded_panel(lv, [(r, case)]), *shown, error_panel(name, case)])
else:  # clean, degraded, then each reconstruction; their error maps in the rows below
    at_level = [(r, cases[name]) for name, r, _ in roads]
    images = [clean_panel, degraded_panel(choice.level, at_level)]
    images += [(name, cases[name].reconstructed, "image", outlines(cases[name].mask_recon))
               for name, r, _ in roads if r not in run.returns_degraded]
    panels = rows_of(images) + [error_panel(name, c) for name, c in cases.items()]
grid = cached_plot("image_grid", panels, columns=COLUMNS)
chart(st, "compare-images", grid, width="stretch", run=run,
      title=f"One image, clean, degraded and reconstructed at {choice.level:g} {run.level.unit}, with error maps")
st.caption("Zoom or pan one image and the others follow. Error maps share one scale, 0 (black) to 0.25.")

thresholds = data.thresholds(key)
clean_t = torch.from_numpy(first.clean[None, None])


def slice_dice(prediction: np.ndarray | None) -> dict:
    if not segmented:
        return {}
    truth_t = torch.from_numpy(first.mask_true[None, None])
    return {"Dice": float(dice(torch.from_numpy(prediction[None, None]), truth_t)[0])}


QUALITY = {"psnr": 2, "ssim": 3}  # the image-quality metrics of the table, with their decimals
rows = [{"road": "clean", **{metric_label(m): np.nan for m in QUALITY}, **slice_dice(first.mask_clean),
         **{lb: first.clean_scores[j] for j, lb in enumerate(first.labels)}}]
for r, c in cases.items():
    quality = image_quality(torch.from_numpy(c.reconstructed[None, None]), clean_t)
    rows.append({"road": r, **{metric_label(m): float(quality[m][0]) for m in QUALITY}, **slice_dice(c.mask_recon),
                 **{lb: c.recon_scores[j] for j, lb in enumerate(c.labels)}})
table = pd.DataFrame(rows)
truth = clean_rows.set_index("image_id").loc[image_id]


def mark(value: float, label: str) -> str:
    return f"{value:.2f} {'●' if value >= thresholds[label] else '○'}"


shown = table.copy()
for label in first.labels:
    shown[label] = [mark(v, label) for v in table[label]]
for column, digits in ((metric_label(m), d) for m, d in QUALITY.items()):  # the clean road is its own reference
    shown[column] = ["—" if np.isnan(v) else f"{v:.{digits}f}" for v in table[column]]
if segmented:
    shown["Dice"] = [f"{v:.3f}" for v in table["Dice"]]
show(shown, hide_index=True, width="stretch")
st.caption("Classifier probability per finding; ● called at the fixed threshold, ○ not called. Truth: "
           + ", ".join(f"{lb} {'present' if truth[f'target:{lb}'] == 1 else 'absent'}" for lb in first.labels))
