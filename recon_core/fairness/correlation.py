"""Does image quality predict the task? Rank correlations across a run's (reconstructor × level) cells.

For every bootstrap resample (the same resampled test images in every cell) the cell-level
PSNR or SSIM and the task metric are recomputed, and Spearman's ρ is taken per resample: the
interval says how sure the ranking is, not just how the cells happened to fall. Also per
attribute: ρ between each cell's PSNR gap across groups and its equal-opportunity gap.

Three scopes, each a row per pair:

- 'pooled': ρ across every cell of the run. The level (dose, acceleration) drives both image
  quality and the task, so this ρ is confounded by the level: it says "worse levels are worse at
  both", not "the better-quality reconstruction gives the better task".
- 'level <value>': ρ across the reconstructors at one level (they are the units; a level needs
  at least three with values, else it is skipped). Few units, so wide intervals.
- 'within levels': the mean over those levels of the within-level ρ, taken per resample so it
  has an interval too. This is the answer to "at a given level, does the reconstruction with
  the better quality give the better task?".

Only test images are resampled; the reconstructors and levels are held fixed, so an interval says
how sure the ranking of these reconstructors is, not how it would hold for other ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recon_core.fairness import bootstrap as bs
from recon_core.fairness import resampling
from recon_core.fairness.groups import iter_groups
from recon_core.fairness.summary import Minimums

COLUMNS = ["scope", "x_metric", "y_metric", "attribute", "estimate", "ci_low", "ci_high", "n_cells"]
POOLED = "pooled"
"""Scope of ρ across every cell of the run (confounded by the level)."""
WITHIN = "within levels"
"""Scope of the mean over levels of the within-level ρ."""
DEFAULT_MINIMUMS = Minimums()
"""The cell summaries' defaults (group size 10, 5 positives, 5 negatives)."""
MIN_UNITS = 3
"""Fewest cells a ρ is taken over: across a run's cells, or across the reconstructors at one level."""


def level_scope(level: float) -> str:
    """Scope of ρ across the reconstructors at one level: 'level 300'."""
    return f"level {level:g}"


def _quiet_nanmean(stack: np.ndarray, axis: int) -> np.ndarray:
    """nanmean that returns NaN for all-NaN columns without a warning (one-class groups are expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=axis)


def _usable(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C,) cells with a value on both sides in every resample: the cells a ρ is taken over."""
    return ~(np.isnan(x) | np.isnan(y)).any(axis=0)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(R,) Spearman ρ across cells (axis 1) for each resample row; NaN where either side is constant."""
    ok = _usable(x, y)
    if not ok.any():
        return np.full(x.shape[0], np.nan)
    rx, ry = rankdata(x[:, ok], axis=1), rankdata(y[:, ok], axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def _row(scope: str, pair: dict, rho: np.ndarray, ci_level: float, n_cells: int) -> dict:
    """One table row: the point estimate (row 0) and the percentile interval of the resamples (rows 1..)."""
    lo, hi = bs.interval(rho[1:], ci_level) if not np.isnan(rho[0]) else (np.nan, np.nan)
    return dict(scope=scope, **pair, estimate=float(rho[0]), ci_low=lo, ci_high=hi, n_cells=n_cells)


def _cell_samples(rows: pd.DataFrame, labels: Sequence[str], thresholds: dict[str, float],
                  attributes: Sequence[str], weights: np.ndarray, means: Sequence[str],
                  mins: Minimums) -> dict[str, np.ndarray]:
    """One cell's resampled statistics; its PSNR and EO gaps as the cell summaries define them (the same
    minimum group size and positives; the label mean over the findings that have a gap)."""
    present = [m for m in means if m in rows]
    out = {m: bs.mean(rows[m].to_numpy(float), weights, np.ones(len(rows), bool)) for m in present}
    targets = rows[[f"target:{lb}" for lb in labels]].to_numpy(float)
    scores = rows[[f"score:{lb}" for lb in labels]].to_numpy(float)
    everyone = np.ones(len(rows), bool)
    out["auroc"] = _quiet_nanmean(np.stack([bs.auroc(scores[:, j], targets[:, j], weights, everyone)
                                        for j in range(len(labels))]), axis=0)
    psnr = rows["psnr"].to_numpy(float)
    nan = np.full(weights.shape[0], np.nan)
    for attribute in attributes:
        groups = [m for a, _, m in iter_groups(rows, [attribute]) if a == attribute and m.sum() >= mins.group_size]
        out[f"psnr_gap:{attribute}"] = bs.spread(np.stack([bs.mean(psnr, weights, m) for m in groups] or [nan]))
        gaps = []
        for j, label in enumerate(labels):
            decisions = scores[:, j] >= thresholds[label]
            tprs = [bs.rate(decisions, targets[:, j], True, weights, m) if (m & (targets[:, j] == 1)).sum()
                    >= mins.positives else nan for m in groups]
            gaps.append(bs.spread(np.stack(tprs or [nan])))
        found = [g for g in gaps if not np.isnan(g[0])]
        out[f"eo_gap:{attribute}"] = np.mean(np.stack(found), axis=0) if found else nan
    return out


def quality_task_correlations(cells: dict[tuple[str, float], pd.DataFrame], labels: Sequence[str],
                              thresholds: dict[str, float], attributes: Sequence[str] = ("sex", "age_band"),
                              n_resamples: int = 1000, ci_level: float = 0.95, seed: int = 0,
                              quality: Sequence[str] = ("psnr", "ssim"),
                              tasks: Sequence[str] = ("auroc",), mins: Minimums = DEFAULT_MINIMUMS) -> pd.DataFrame:
    """ρ(quality, task) per quality and task metric, and per attribute ρ(PSNR gap, EO gap): pooled and within levels.

    `tasks` are 'auroc' (mean over labels, from the scores) or per-image columns averaged per cell
    (Dice); the modality names them (its headline curves). The EO gap of a cell is the mean over
    labels of each label's max − min TPR across groups.

    `cells` maps (reconstructor, level) to that cell's stored per-image rows (the same images in each).
    Every pair gets a 'pooled' row (across all cells; n_cells = all cells), a 'level <v>' row per
    level with at least three reconstructors with values (n_cells = those reconstructors), and a
    'within levels' row, the mean of the level rows' ρ per resample (n_cells = the cells of the
    levels averaged; absent when no level qualifies). The resampled images are the same in every
    cell and scope. Needs at least three cells; returns an empty table otherwise.
    """
    if len(cells) < MIN_UNITS:
        return pd.DataFrame(columns=COLUMNS)
    first = next(iter(cells.values()))
    # the cells' own resampling plan within groups (by subject where subjects have several images):
    # one matrix for every cell
    weights = resampling.plan(first.sort_values("image_id").reset_index(drop=True), attributes, n_resamples, seed)
    means = [*quality, *(t for t in tasks if t != "auroc")]
    per_cell = [_cell_samples(rows.sort_values("image_id").reset_index(drop=True), labels, thresholds,
                              attributes, weights, means, mins) for rows in cells.values()]
    cell_levels = np.array([float(level) for _, level in cells])
    pairs = [(q, t, "all") for t in tasks for q in quality if q in per_cell[0] and t in per_cell[0]]
    pairs += [(f"psnr_gap:{a}", f"eo_gap:{a}", a) for a in attributes]
    out = []
    for x_key, y_key, attribute in pairs:
        pair = dict(x_metric=x_key.split(":")[0], y_metric=y_key.split(":")[0], attribute=attribute)
        x = np.stack([c[x_key] for c in per_cell], axis=1)
        y = np.stack([c[y_key] for c in per_cell], axis=1)
        out.append(_row(POOLED, pair, _spearman_rows(x, y), ci_level, len(cells)))
        levels, within, n_within = 0, [], 0
        for level in np.unique(cell_levels):
            at = cell_levels == level
            n_units = int(_usable(x[:, at], y[:, at]).sum())
            if n_units < MIN_UNITS:
                continue
            rho = _spearman_rows(x[:, at], y[:, at])
            out.append(_row(level_scope(float(level)), pair, rho, ci_level, n_units))
            levels += 1
            if not np.isnan(rho[0]):  # a level with a constant side has no ρ to average
                within.append(rho)
                n_within += n_units
        if levels:
            mean = _quiet_nanmean(np.stack(within), axis=0) if within else np.full(len(weights), np.nan)
            out.append(_row(WITHIN, pair, mean, ci_level, n_within))
    return pd.DataFrame(out, columns=COLUMNS)
