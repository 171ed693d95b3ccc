"""Summaries of one sweep cell with bootstrap CIs: quality, task metrics per group, gaps, added bias.

Per group: AUROC, TPR, FPR, FNR (underdiagnosis), PPV and calibration error (ECE) per label
and their mean over labels; PSNR/SSIM/NMSE. Per attribute: max − min gap and min/max ratio of
each, the worst group, the equal-opportunity gap (ΔTPR) and equalized-odds gap
(½[ΔTPR + ΔFPR]). "Added by reconstruction" = metric on reconstructed images − metric on the
clean images with the same resampled images on both sides (paired), with a two-sided
bootstrap p-value. Groups under `min_group_size` report NaN and their size.

A max − min gap is a folded statistic: sampling noise alone makes it positive, so a test of
"added gap ≠ 0" built on it is conservative. For an attribute with exactly two groups the
signed difference `<metric>_diff` (first − second group, sorted: F − M, 60+ − <60) is reported
too, and the p-value of every added gap of that attribute tests whether reconstruction changed
the signed difference — calibrated at the nominal rate under no added bias (tested).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness import bootstrap as bs
from recon_core.fairness.groups import iter_groups
from recon_core.metrics import catalogue
from recon_core.seeding import numpy_rng

IMAGE_METRICS = catalogue.QUALITY  # per image, or per patient for MRI (volume PSNR/NMSE)
SEGMENTATION_METRICS = catalogue.SEGMENTATION
TASK_METRICS = catalogue.TASK
HIGHER_IS_WORSE = catalogue.HIGHER_IS_WORSE
COLUMNS = ["metric", "label", "attribute", "grp", "estimate", "ci_low", "ci_high", "n", "n_pos", "p_value"]
DEFAULT_ATTRIBUTES = ("sex", "age_band", "sex×age_band")

Samples = dict[tuple[str, str, str, str], np.ndarray]


def _nanmean(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def _ratio(stack: np.ndarray) -> np.ndarray:
    """(R,) min / max across groups; NaN unless two groups have values and the max is positive."""
    valid = ~np.isnan(stack)
    hi = np.where(valid, stack, -np.inf).max(0)
    lo = np.where(valid, stack, np.inf).min(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((valid.sum(0) >= 2) & (hi > 0), lo / hi, np.nan)


def _signed_source(metric: str) -> str | None:
    """The signed two-group difference whose change tests an added gap (tpr_diff for eo_gap)."""
    if metric == "eo_gap":
        return "tpr_diff"
    if metric.endswith("_gap"):
        return metric.removesuffix("_gap") + "_diff"
    return None


class _Emitter:
    def __init__(self, ci_level: float) -> None:
        self.ci_level = ci_level
        self.rows: list[dict] = []

    def __call__(self, metric: str, label: str, attribute: str, grp: str, samples: np.ndarray,
                 n: int, n_pos: int | None = None, p_value: float | None = None) -> None:
        estimate = float(samples[0])
        lo, hi = bs.interval(samples[1:], self.ci_level) if not np.isnan(estimate) else (np.nan, np.nan)
        self.rows.append(dict(metric=metric, label=label, attribute=attribute, grp=grp, estimate=estimate,
                              ci_low=lo, ci_high=hi, n=int(n), n_pos=n_pos, p_value=p_value))


def _task_samples(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray, labels: Sequence[str],
                  groups: list[tuple[str, str, np.ndarray]], weights: np.ndarray, min_size: int,
                  attributes: Sequence[str]) -> tuple[Samples, dict[tuple[str, str, str], str]]:
    """Bootstrap rows of each task metric per (label, group), label means, per-attribute gaps.

    Also returns the worst group of each (metric, label, attribute), chosen on the point estimate.
    """
    out: Samples = {}
    empty = np.full(weights.shape[0], np.nan)
    for j, label in enumerate(labels):
        s, t = scores[:, j], targets[:, j]
        decisions = s >= thresholds[j]
        for attribute, grp, mask in groups:
            if attribute != "all" and mask.sum() < min_size:
                for metric in TASK_METRICS:
                    out[metric, label, attribute, grp] = empty
                continue
            tpr = bs.rate(decisions, t, True, weights, mask)
            out["auroc", label, attribute, grp] = bs.auroc(s, t, weights, mask)
            out["tpr", label, attribute, grp] = tpr
            out["fnr", label, attribute, grp] = 1 - tpr
            out["fpr", label, attribute, grp] = bs.rate(decisions, t, False, weights, mask)
            out["ppv", label, attribute, grp] = bs.ppv(decisions, t, weights, mask)
            out["ece", label, attribute, grp] = bs.calibration_error(s, t, weights, mask)
    for metric, attribute, grp in {(m, a, g) for (m, _, a, g) in out}:
        out[metric, "mean", attribute, grp] = _nanmean(np.stack([out[metric, lb, attribute, grp] for lb in labels]))
    worst: dict[tuple[str, str, str], str] = {}
    for label in (*labels, "mean"):
        for attribute in attributes:
            names = [g for a, g, _ in groups if a == attribute]
            for metric in TASK_METRICS:
                stack = np.stack([out[metric, label, attribute, g] for g in names])
                out[f"{metric}_gap", label, attribute, ""] = bs.spread(stack)
                out[f"{metric}_ratio", label, attribute, ""] = _ratio(stack)
                point = stack[:, 0]
                if not np.all(np.isnan(point)):
                    pick = np.nanargmax(point) if metric in HIGHER_IS_WORSE else np.nanargmin(point)
                    worst[metric, label, attribute] = names[int(pick)]
                if len(names) == 2:
                    out[f"{metric}_diff", label, attribute, ""] = stack[0] - stack[1]
            out["eo_gap", label, attribute, ""] = out["tpr_gap", label, attribute, ""]
            out["eodd", label, attribute, ""] = 0.5 * (out["tpr_gap", label, attribute, ""]
                                                        + out["fpr_gap", label, attribute, ""])
    return out, worst


def _group_means(values: np.ndarray, groups: list[tuple[str, str, np.ndarray]], weights: np.ndarray,
                 min_size: int) -> dict[tuple[str, str], np.ndarray]:
    """Bootstrap rows of the mean of `values` (NaN skipped) in every group."""
    known = ~np.isnan(values)
    filled = np.where(known, values, 0.0)
    out = {}
    for attribute, grp, mask in groups:
        if attribute != "all" and mask.sum() < min_size:
            out[attribute, grp] = np.full(weights.shape[0], np.nan)
            continue
        den = weights @ (known & mask).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[attribute, grp] = np.where(den > 0, (weights @ (filled * mask)) / np.where(den > 0, den, 1), np.nan)
    return out


def _segmentation(emit: _Emitter, metric: str, rows: pd.DataFrame, clean: pd.DataFrame | None,
                  groups: list[tuple[str, str, np.ndarray]], weights: np.ndarray, attributes: Sequence[str],
                  min_size: int) -> None:
    """Dice or HD95 per group, the gap (max − min), for Dice the skewed error ratio
    (1 − min Dice)/(1 − max Dice), and each one's change from the clean images (paired) with a p-value."""
    recon = _group_means(rows[metric].to_numpy(dtype=float), groups, weights, min_size)
    base = None
    if clean is not None and metric in clean and clean[metric].notna().any():
        base = _group_means(clean[metric].to_numpy(dtype=float), groups, weights, min_size)
    derived: dict[tuple[str, str, str], np.ndarray] = {}
    for attribute in attributes:
        names = [g for a, g, _ in groups if a == attribute]
        for source, tag in ((recon, "recon"), (base, "base")):
            if source is None:
                continue
            stack = np.stack([source[attribute, g] for g in names])
            derived[tag, f"{metric}_gap", attribute] = bs.spread(stack)
            if metric == "dice":
                valid = ~np.isnan(stack)
                hi = np.where(valid, stack, -np.inf).max(0)
                lo = np.where(valid, stack, np.inf).min(0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = np.where((valid.sum(0) >= 2) & (hi < 1), (1 - lo) / (1 - hi), np.nan)
                derived[tag, "dice_skewed_error_ratio", attribute] = ratio
            if len(names) == 2:
                derived[tag, f"{metric}_diff", attribute] = stack[0] - stack[1]
    masks = {(a, g): m for a, g, m in groups}
    for (attribute, grp), samples in recon.items():
        n = int(masks[attribute, grp].sum())
        emit(metric, "", attribute, grp, samples, n)
        if base is not None:
            added = samples - base[attribute, grp]
            emit(f"{metric}_added", "", attribute, grp, added, n, p_value=bs.two_sided_p(added[1:]))
    for (tag, name, attribute), samples in derived.items():
        if tag != "recon":
            continue
        emit(name, "", attribute, "", samples, len(rows))
        if base is not None:
            added = samples - derived["base", name, attribute]
            test = added
            signed = ("recon", f"{metric}_diff", attribute)
            if name.endswith("_gap") and signed in derived:
                test = derived[signed] - derived["base", f"{metric}_diff", attribute]
            emit(f"{name}_added", "", attribute, "", added, len(rows), p_value=bs.two_sided_p(test[1:]))


def summarise_cell(rows: pd.DataFrame, labels: Sequence[str], thresholds: dict[str, float], *,
                   clean: pd.DataFrame | None = None, attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                   n_resamples: int = 1000, ci_level: float = 0.95, min_group_size: int = 10,
                   seed: int = 0) -> pd.DataFrame:
    """Aggregates of one cell's per-image rows (wide: score:<label>, target:<label>, psnr, …).

    `clean`, when given, holds the same images on the clean road; `*_added` metrics are then
    reported with p-values. Resample weights depend only on (seed, image count), so every cell
    of a study and its clean baseline share them.
    """
    rows = rows.sort_values("image_id").reset_index(drop=True)
    if clean is not None:
        clean = clean.sort_values("image_id").reset_index(drop=True)
        if not np.array_equal(clean["image_id"].to_numpy(), rows["image_id"].to_numpy()):
            raise ValueError("clean and reconstructed rows cover different images; cannot pair them")
    n = len(rows)
    weights = bs.resample_weights(n, n_resamples, numpy_rng(seed, "bootstrap", n))
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
            samples = np.full(weights.shape[0], np.nan) if small else bs.mean(values, weights, mask)
            emit(metric, "", attribute, grp, samples, mask.sum())
            if attribute != "all":
                per_attr[attribute].append(samples)
        for attribute, stack in per_attr.items():
            emit(f"{metric}_gap", "", attribute, "", bs.spread(np.stack(stack)), n)

    for metric in SEGMENTATION_METRICS:
        if metric in rows and not rows[metric].isna().all():
            _segmentation(emit, metric, rows, clean, groups, weights, attributes, min_group_size)

    targets = rows[[f"target:{lb}" for lb in labels]].to_numpy(dtype=float)
    thr = np.array([thresholds[lb] for lb in labels])
    args = (targets, thr, labels, groups, weights, min_group_size, attributes)
    recon, worst = _task_samples(rows[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), *args)
    base = None
    if clean is not None:
        base, _ = _task_samples(clean[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), *args)
    masks = {(a, g): m for a, g, m in groups}
    for (metric, label, attribute, grp), samples in sorted(recon.items()):
        mask = masks.get((attribute, grp), np.ones(n, dtype=bool))
        n_pos = None if label == "mean" else int(np.nansum(targets[mask, list(labels).index(label)] == 1))
        emit(metric, label, attribute, grp, samples, mask.sum(), n_pos)
        if base is not None:
            added = samples - base[metric, label, attribute, grp]
            test = added
            signed = _signed_source(metric)
            if signed and (signed, label, attribute, "") in recon:
                test = recon[signed, label, attribute, ""] - base[signed, label, attribute, ""]
            emit(f"{metric}_added", label, attribute, grp, added, mask.sum(), n_pos, bs.two_sided_p(test[1:]))
    for (metric, label, attribute), grp in sorted(worst.items()):
        mask = masks[attribute, grp]
        emit(f"worst_{metric}", label, attribute, grp, recon[metric, label, attribute, grp], mask.sum())
    return pd.DataFrame(emit.rows, columns=COLUMNS)
