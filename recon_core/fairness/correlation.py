"""Does image quality predict the task? Rank correlations across a run's (reconstructor × level) cells.

For every bootstrap resample (the same resampled test images in every cell) the cell-level
PSNR or SSIM and the task metric are recomputed, and Spearman's ρ across cells is taken per
resample: the interval says how sure the ranking is, not just how the cells happened to fall.
Also per attribute: ρ between each cell's PSNR gap across groups and its equal-opportunity gap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recon_core.fairness import bootstrap as bs
from recon_core.fairness.groups import iter_groups
from recon_core.seeding import numpy_rng

COLUMNS = ["x_metric", "y_metric", "attribute", "estimate", "ci_low", "ci_high", "n_cells"]


def _quiet_nanmean(stack: np.ndarray, axis: int) -> np.ndarray:
    """nanmean that returns NaN for all-NaN columns without a warning (one-class groups are expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=axis)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(R,) Spearman ρ across cells (axis 1) for each resample row; NaN where either side is constant."""
    ok = ~(np.isnan(x) | np.isnan(y)).any(axis=0)
    if not ok.any():
        return np.full(x.shape[0], np.nan)
    rx, ry = rankdata(x[:, ok], axis=1), rankdata(y[:, ok], axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def _cell_samples(rows: pd.DataFrame, labels: Sequence[str], thresholds: dict[str, float],
                  attributes: Sequence[str], weights: np.ndarray, means: Sequence[str]) -> dict[str, np.ndarray]:
    present = [m for m in means if m in rows]
    out = {m: bs.mean(rows[m].to_numpy(float), weights, np.ones(len(rows), bool)) for m in present}
    targets = rows[[f"target:{lb}" for lb in labels]].to_numpy(float)
    scores = rows[[f"score:{lb}" for lb in labels]].to_numpy(float)
    everyone = np.ones(len(rows), bool)
    out["auroc"] = _quiet_nanmean(np.stack([bs.auroc(scores[:, j], targets[:, j], weights, everyone)
                                        for j in range(len(labels))]), axis=0)
    psnr = rows["psnr"].to_numpy(float)
    for attribute in attributes:
        groups = [m for a, _, m in iter_groups(rows, [attribute]) if a == attribute]
        out[f"psnr_gap:{attribute}"] = bs.spread(np.stack([bs.mean(psnr, weights, m) for m in groups]))
        gaps = []
        for j, label in enumerate(labels):
            decisions = scores[:, j] >= thresholds[label]
            gaps.append(bs.spread(np.stack([bs.rate(decisions, targets[:, j], True, weights, m) for m in groups])))
        out[f"eo_gap:{attribute}"] = _quiet_nanmean(np.stack(gaps), axis=0)
    return out


def quality_task_correlations(cells: dict[tuple[str, float], pd.DataFrame], labels: Sequence[str],
                              thresholds: dict[str, float], attributes: Sequence[str] = ("sex", "age_band"),
                              n_resamples: int = 1000, ci_level: float = 0.95, seed: int = 0,
                              quality: Sequence[str] = ("psnr", "ssim"),
                              tasks: Sequence[str] = ("auroc",)) -> pd.DataFrame:
    """ρ(quality, task) for each quality and task metric, and per attribute ρ(PSNR gap, EO gap), across cells.

    `tasks` are 'auroc' (mean over labels, from the scores) or per-image columns averaged per cell
    (Dice); the modality names them (its headline curves).

    `cells` maps (reconstructor, level) to that cell's stored per-image rows (the same images in each).
    Needs at least three cells; returns an empty table otherwise.
    """
    if len(cells) < 3:
        return pd.DataFrame(columns=COLUMNS)
    first = next(iter(cells.values()))
    n = len(first)
    weights = bs.resample_weights(n, n_resamples, numpy_rng(seed, "bootstrap", n))
    means = [*quality, *(t for t in tasks if t != "auroc")]
    per_cell = [_cell_samples(rows.sort_values("image_id").reset_index(drop=True), labels, thresholds,
                              attributes, weights, means) for rows in cells.values()]
    pairs = [(q, t, "all") for t in tasks for q in quality if q in per_cell[0] and t in per_cell[0]]
    pairs += [(f"psnr_gap:{a}", f"eo_gap:{a}", a) for a in attributes]
    out = []
    for x_key, y_key, attribute in pairs:
        rho = _spearman_rows(np.stack([c[x_key] for c in per_cell], axis=1),
                             np.stack([c[y_key] for c in per_cell], axis=1))
        lo, hi = bs.interval(rho[1:], ci_level) if not np.isnan(rho[0]) else (np.nan, np.nan)
        out.append(dict(x_metric=x_key.split(":")[0], y_metric=y_key.split(":")[0], attribute=attribute,
                        estimate=float(rho[0]), ci_low=lo, ci_high=hi, n_cells=len(cells)))
    return pd.DataFrame(out, columns=COLUMNS)
