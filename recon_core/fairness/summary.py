"""Summaries of one sweep cell with bootstrap CIs: quality, AUROC, TPR/FPR per group, gaps, added bias.

"Added by reconstruction" = metric on reconstructed images − metric on the clean images, with
the same resampled images on both sides (paired), so the interval reflects the reconstruction,
not the sampling of patients. Groups under `min_group_size` report NaN and their size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness import bootstrap as bs
from recon_core.fairness.groups import iter_groups
from recon_core.seeding import numpy_rng

IMAGE_METRICS = ("psnr", "ssim", "nmse")
COLUMNS = ["metric", "label", "attribute", "grp", "estimate", "ci_low", "ci_high", "n", "n_pos"]


def _nanmean(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


class _Emitter:
    def __init__(self, ci_level: float) -> None:
        self.ci_level = ci_level
        self.rows: list[dict] = []

    def __call__(self, metric: str, label: str, attribute: str, grp: str, samples: np.ndarray,
                 n: int, n_pos: int | None = None) -> None:
        estimate = float(samples[0])
        lo, hi = bs.interval(samples[1:], self.ci_level) if not np.isnan(estimate) else (np.nan, np.nan)
        self.rows.append(dict(metric=metric, label=label, attribute=attribute, grp=grp, estimate=estimate,
                              ci_low=lo, ci_high=hi, n=int(n), n_pos=n_pos))


def _task_samples(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray, labels: Sequence[str],
                  groups: list[tuple[str, str, np.ndarray]], idx: np.ndarray, min_size: int,
                  attributes: Sequence[str]) -> dict[tuple[str, str, str, str], np.ndarray]:
    """Bootstrap rows of AUROC/TPR/FPR per (label, group), their label means and per-attribute gaps."""
    out: dict[tuple[str, str, str, str], np.ndarray] = {}
    empty = np.full(idx.shape[0], np.nan)
    for j, label in enumerate(labels):
        decisions = scores[:, j] >= thresholds[j]
        for attribute, grp, mask in groups:
            small = attribute != "all" and mask.sum() < min_size
            out["auroc", label, attribute, grp] = empty if small else bs.auroc(scores[:, j], targets[:, j], idx, mask)
            out["tpr", label, attribute, grp] = empty if small else bs.rate(decisions, targets[:, j], True, idx, mask)
            out["fpr", label, attribute, grp] = empty if small else bs.rate(decisions, targets[:, j], False, idx, mask)
        for attribute in attributes:
            tpr = np.stack([out["tpr", label, a, g] for a, g, _ in groups if a == attribute])
            fpr = np.stack([out["fpr", label, a, g] for a, g, _ in groups if a == attribute])
            out["eo_gap", label, attribute, ""] = bs.spread(tpr)
            out["eodd", label, attribute, ""] = 0.5 * (bs.spread(tpr) + bs.spread(fpr))
    keys = {(m, a, g) for (m, _, a, g) in out}
    for metric, attribute, grp in keys:
        out[metric, "mean", attribute, grp] = _nanmean(np.stack([out[metric, lb, attribute, grp] for lb in labels]))
    return out


def summarise_cell(rows: pd.DataFrame, labels: Sequence[str], thresholds: dict[str, float], *,
                   clean: pd.DataFrame | None = None, attributes: Sequence[str] = ("sex", "age_band"),
                   n_resamples: int = 1000, ci_level: float = 0.95, min_group_size: int = 10,
                   seed: int = 0) -> pd.DataFrame:
    """Aggregates of one cell's per-image rows (wide: score:<label>, target:<label>, psnr, …).

    `clean`, when given, holds the same images on the clean road; `*_added` metrics are then
    reported. Resample indices depend only on (seed, image count), so every cell of a study and
    its clean baseline share them.
    """
    rows = rows.sort_values("image_id").reset_index(drop=True)
    if clean is not None:
        clean = clean.sort_values("image_id").reset_index(drop=True)
        if not np.array_equal(clean["image_id"].to_numpy(), rows["image_id"].to_numpy()):
            raise ValueError("clean and reconstructed rows cover different images; cannot pair them")
    n = len(rows)
    idx = bs.resample_weights(n, n_resamples, numpy_rng(seed, "bootstrap", n))
    groups = list(iter_groups(rows, attributes))
    emit = _Emitter(ci_level)

    for metric in IMAGE_METRICS:
        if metric not in rows or rows[metric].isna().all():
            continue
        values = rows[metric].to_numpy(dtype=float)
        values = np.where(np.isinf(values), np.nan, values)
        per_attr: dict[str, list[np.ndarray]] = {a: [] for a in attributes}
        for attribute, grp, mask in groups:
            small = attribute != "all" and mask.sum() < min_group_size
            samples = np.full(idx.shape[0], np.nan) if small else bs.mean(values, idx, mask)
            emit(metric, "", attribute, grp, samples, mask.sum())
            if attribute != "all":
                per_attr[attribute].append(samples)
        for attribute, stack in per_attr.items():
            emit(f"{metric}_gap", "", attribute, "", bs.spread(np.stack(stack)), n)

    targets = rows[[f"target:{lb}" for lb in labels]].to_numpy(dtype=float)
    thr = np.array([thresholds[lb] for lb in labels])
    recon = _task_samples(rows[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), targets, thr,
                          labels, groups, idx, min_group_size, attributes)
    base = None
    if clean is not None:
        base = _task_samples(clean[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), targets, thr,
                             labels, groups, idx, min_group_size, attributes)
    masks = {(a, g): m for a, g, m in groups}
    for (metric, label, attribute, grp), samples in sorted(recon.items()):
        mask = masks.get((attribute, grp), np.ones(n, dtype=bool))
        n_pos = None if label == "mean" else int(np.nansum(targets[mask, list(labels).index(label)] == 1))
        emit(metric, label, attribute, grp, samples, mask.sum(), n_pos)
        if base is not None:
            emit(f"{metric}_added", label, attribute, grp, samples - base[metric, label, attribute, grp],
                 mask.sum(), n_pos)
    return pd.DataFrame(emit.rows, columns=COLUMNS)
