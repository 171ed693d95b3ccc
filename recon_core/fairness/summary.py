"""Summaries of one sweep cell from its stored rows: metrics per group, signed group differences, added bias.

Conventions (one definition everywhere; the Fairness page and the report state them):

- **Per group** (and everyone): AUROC, TPR, FPR, FNR (underdiagnosis), PPV, selection rate and
  calibration error (ECE) per finding label; PSNR/SSIM/NMSE; Dice/HD95. A group needs
  `min_group_size` units, and a rate needs `min_positives` positives (TPR, FNR) or
  `min_negatives` negatives (FPR), AUROC and PPV both, else it has no estimate. Single-group
  rates get Wilson score intervals on their counts and AUROC DeLong intervals (clustered
  cohorts, and label means: the bootstrap's percentile interval).
- **Signed differences** `<m>_diff` lead: for two groups the first minus the second (sorted:
  'F − M', '60+ − <60'); for three or more, each group minus the rest pooled ('F & <60 − rest'),
  with intervals simultaneous over the attribute's k contrasts and p-values adjusted to match
  (Bonferroni). `eodd_diff` = ½(ΔTPR + ΔFPR), the average odds difference: a signed EODD-type
  statistic in which opposite moves cancel (a group better on TPR by 0.1 and on FPR by 0.1
  scores 0), so it is read beside ΔTPR and ΔFPR, never alone. FNR has no difference of its
  own (it is −ΔTPR: one hypothesis, not two); ECE is not compared between groups (its
  estimator grows as a group shrinks: a perfectly calibrated model scores 0.229 at n = 15 and
  0.058 at n = 300).
- **Added by reconstruction** `<m>_diff_added` = the signed difference on reconstructed images −
  on clean images, with the same resampled images on both roads (paired). Estimate, interval
  and p-value come from one bootstrap distribution (`bootstrap.normal_test`), so they agree.
  The overall change of a finding's AUROC (everyone, the same cases on both roads) is DeLong's
  own case: its interval and p come from the paired DeLong variance (clustered cohorts: the
  bootstrap), which tests/test_delong.py checks against the bootstrap's spread.
- **Folded gaps** `<m>_gap` (max − min; `eo_gap` for TPR, `eodd` = ½[TPR gap + FPR gap]), their
  `_added` change and `<m>_ratio` (min / max) are descriptive numbers with percentile intervals
  and no p-value: sampling noise alone makes a max − min gap positive.
- **Label 'mean'** = the mean over labels of each per-label statistic (of the per-label gaps,
  differences and changes; never the gap of label-averaged rates, where opposite gaps cancel),
  over the same findings in every group: those with an estimate in each group of the attribute.
- **p-values** are given only to the tests of the run's stated families
  (`multiple_testing.FAMILIES`): differences on the clean road, every `_diff_added`, and each
  overall task change; the run's finalisation assigns families and q-values.

Resampling: `resampling.plan` (stratified by demographic cell; by subject when subjects have
several images); the plan depends only on the cohort and seed, so every cell and its clean
baseline share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from recon_core.fairness import bootstrap as bs
from recon_core.fairness import delong, resampling
from recon_core.fairness.groups import iter_groups
from recon_core.metrics import catalogue

QUALITY_METRICS = catalogue.QUALITY  # per image, or per patient for MRI (volume PSNR/NMSE)
SEGMENTATION_METRICS = catalogue.SEGMENTATION
UNCERTAINTY_METRICS = catalogue.UNCERTAINTY  # a sampler's spread calibration and sample flips: by group, untested
TASK_METRICS = catalogue.TASK
CONTRASTED = ("auroc", "tpr", "fpr", "ppv", "sel")
"""Task metrics compared between groups (signed differences, folded gaps, ratios)."""
GAP_NAME = {"tpr": "eo_gap"}
"""Folded gaps with a name of their own (the TPR gap is the equal-opportunity gap)."""
NO_WORST = frozenset({"sel", "ece"})
"""No worst group: the selection rate has no 'worse' direction; ECE grows as a group shrinks."""
COLUMNS = ["metric", "label", "attribute", "grp", "estimate", "ci_low", "ci_high", "n", "n_pos", "p_value",
           "dropped"]
DEFAULT_ATTRIBUTES = ("sex", "age_band", "sex×age_band")
MINUS = " − "
"""Joins the two sides of a contrast: 'F − M', 'F & <60 − rest'."""

Key = tuple[str, str, str, str]  # metric, label, attribute, grp


@dataclass(frozen=True)
class Minimums:
    """Below these a group's statistic has no estimate: units in the group, positives and negatives per label."""

    group_size: int = 10
    positives: int = 5
    negatives: int = 5


@dataclass(frozen=True)
class Contrast:
    """One signed comparison of an attribute: `name` = first side − other side, one of `k` contrasts."""

    name: str
    first: np.ndarray
    other: np.ndarray
    k: int


def contrasts(groups: list[tuple[str, str, np.ndarray]], attribute: str) -> list[Contrast]:
    """The attribute's signed contrasts: 'a − b' for two groups, each 'g − rest' for three or more."""
    members = [(g, m) for a, g, m in groups if a == attribute]
    if len(members) < 2:
        return []
    if len(members) == 2:
        (a, first), (b, other) = members
        return [Contrast(f"{a}{MINUS}{b}", first, other, 1)]
    everyone = np.logical_or.reduce([m for _, m in members])
    return [Contrast(f"{g}{MINUS}rest", m, everyone & ~m, len(members)) for g, m in members]


def _spread_ratio(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R,) max − min and min / max across groups; NaN unless two groups have values (ratio: and max > 0)."""
    valid = ~np.isnan(stack)
    hi = np.where(valid, stack, -np.inf).max(0)
    lo = np.where(valid, stack, np.inf).min(0)
    two = valid.sum(0) >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(two, hi - lo, np.nan), np.where(two & (hi > 0), lo / hi, np.nan)


class _Emitter:
    """Collects output rows; each statistic's interval (and p-value) follows its kind."""

    def __init__(self, ci_level: float, clustered: bool) -> None:
        self.ci_level, self.clustered = ci_level, clustered
        self.rows: list[dict] = []

    def __call__(self, key: Key, samples: np.ndarray, n: int, n_pos: int | None = None, *, how: str = "percentile",
                 k: int = 1, test: bool = False, counts: tuple[int, int] | None = None,
                 variance: float | None = None) -> None:
        """how: 'percentile', 'normal' (with p when `test`; simultaneous over k), 'wilson' on `counts`,
        'delong' with the AUROC's DeLong `variance`, or 'paired delong': a change of AUROC on the same
        units with its paired DeLong `variance` (interval and p from it)."""
        estimate, p = float(samples[0]), None
        if how == "paired delong" and (variance is None or not np.isfinite(variance) or self.clustered):
            how = "normal"  # clustered units or a single-case class: the bootstrap's test instead
        if np.isnan(estimate):
            lo = hi = np.nan
        elif how == "paired delong":
            lo, hi = delong.interval(estimate, variance, self.ci_level)
            p = delong.p_value(estimate, variance) if test else None
        elif how == "normal":
            lo, hi, p_value = bs.normal_test(samples, self.ci_level, k)
            p = p_value if test else None
        elif how == "wilson" and counts is not None and counts[1] > 0 and not self.clustered:
            ci = binomtest(*counts).proportion_ci(confidence_level=self.ci_level, method="wilson")
            lo, hi = float(ci.low), float(ci.high)
        elif how == "delong" and variance is not None and np.isfinite(variance) and not self.clustered:
            lo, hi = delong.interval(estimate, variance, self.ci_level, clip=True)
        else:
            lo, hi = bs.interval(samples[1:], self.ci_level)
        metric, label, attribute, grp = key
        self.rows.append(dict(metric=metric, label=label, attribute=attribute, grp=grp, estimate=estimate,
                              ci_low=lo, ci_high=hi, n=int(n), n_pos=n_pos, p_value=p, dropped=bs.dropped(samples)))


@dataclass
class _Task:
    """Bootstrap rows of one road's task statistics, with the counts behind each single-group rate."""

    samples: dict[Key, np.ndarray]
    counts: dict[Key, tuple[int, int]]
    variances: dict[Key, float]
    """DeLong variance of each single-group AUROC."""
    scores: np.ndarray
    targets: np.ndarray
    labels: Sequence[str]


def _label_stats(s: np.ndarray, t: np.ndarray, threshold: float, weights: np.ndarray, mask: np.ndarray,
                 mins: Minimums, whole: bool, contrasted_only: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]], float]:
    """One label's task metrics within `mask` (NaN below the minimums), the counts for Wilson intervals and the
    AUROC's DeLong variance."""
    nan = np.full(weights.shape[0], np.nan)
    called = s >= threshold
    pos, neg = mask & (t == 1), mask & (t == 0)
    n_pos, n_neg, n = int(pos.sum()), int(neg.sum()), int(mask.sum())
    big = whole or n >= mins.group_size
    pos_ok = big and n_pos >= (1 if whole else mins.positives)
    neg_ok = big and n_neg >= (1 if whole else mins.negatives)
    tpr = bs.rate(called, t, True, weights, mask) if pos_ok else nan
    stats = {"auroc": bs.auroc(s, t, weights, mask) if pos_ok and neg_ok else nan,
             "tpr": tpr, "fnr": 1 - tpr,
             "fpr": bs.rate(called, t, False, weights, mask) if neg_ok else nan,
             "ppv": bs.ppv(called, t, weights, mask) if pos_ok and neg_ok else nan,
             "sel": bs.mean(called.astype(np.float64), weights, mask) if big else nan}
    if contrasted_only:  # the pooled rest of a contrast: only what is compared
        return stats, {}, np.nan
    stats["ece"] = bs.calibration_error(s, t, weights, mask) if pos_ok and neg_ok else nan
    hits, false_alarms = int((called & pos).sum()), int((called & neg).sum())
    flagged = int((called & (pos | neg)).sum())
    counts = {"tpr": (hits, n_pos), "fnr": (n_pos - hits, n_pos), "fpr": (false_alarms, n_neg),
              "ppv": (hits, flagged), "sel": (int((called & mask).sum()), n)}
    variance = delong.auroc_variance(s[mask], t[mask])[1] if not np.isnan(stats["auroc"][0]) else np.nan
    return stats, counts, variance


def _task(scores: np.ndarray, targets: np.ndarray, thresholds: Sequence[float], labels: Sequence[str],
          groups: list[tuple[str, str, np.ndarray]], weights: np.ndarray, attributes: Sequence[str],
          mins: Minimums) -> _Task:
    """Every task statistic of one road: per (label, group), signed contrasts, folded gaps, label means."""
    out: dict[Key, np.ndarray] = {}
    counts: dict[Key, tuple[int, int]] = {}
    variances: dict[Key, float] = {}
    for j, label in enumerate(labels):

        def stats(mask: np.ndarray, whole: bool = False, rest: bool = False, j: int = j) -> tuple[dict, dict, float]:
            return _label_stats(scores[:, j], targets[:, j], thresholds[j], weights, mask, mins, whole, rest)

        for attribute, grp, mask in groups:
            values, n, variances["auroc", label, attribute, grp] = stats(mask, attribute == "all")
            for metric, samples in values.items():
                out[metric, label, attribute, grp] = samples
            for metric, pair in n.items():
                counts[metric, label, attribute, grp] = pair
        for attribute in attributes:
            for c in contrasts(groups, attribute):
                first = {m: out[m, label, attribute, c.name.split(MINUS)[0]] for m in CONTRASTED}
                second = c.name.split(MINUS)[1]
                other = stats(c.other, rest=True)[0] if c.k > 1 else {m: out[m, label, attribute, second]
                                                                      for m in CONTRASTED}
                for m in CONTRASTED:
                    out[f"{m}_diff", label, attribute, c.name] = first[m] - other[m]
                out["eodd_diff", label, attribute, c.name] = 0.5 * (out["tpr_diff", label, attribute, c.name]
                                                                     + out["fpr_diff", label, attribute, c.name])
            names = [g for a, g, _ in groups if a == attribute]
            for m in CONTRASTED:
                gap, ratio = _spread_ratio(np.stack([out[m, label, attribute, g] for g in names]))
                out[GAP_NAME.get(m, f"{m}_gap"), label, attribute, ""] = gap
                out[f"{m}_ratio", label, attribute, ""] = ratio
            out["eodd", label, attribute, ""] = 0.5 * (out["eo_gap", label, attribute, ""]
                                                       + out["fpr_gap", label, attribute, ""])
    known = {key: not np.isnan(samples[0]) for key, samples in out.items()}
    for metric, attribute, grp in sorted({(m, a, g) for (m, _, a, g) in out}):
        # the same findings in every group: those with an estimate in each group of the attribute (for a
        # difference or gap, at that statistic); a resample lacking one of them has no mean (counted as dropped)
        names = [g for a, g, _ in groups if a == attribute] if metric in TASK_METRICS else [grp]
        use = [lb for lb in labels if all(known[metric, lb, attribute, g] for g in names)]
        out[metric, "mean", attribute, grp] = (np.mean(np.stack([out[metric, lb, attribute, grp] for lb in use]), 0)
                                               if use else np.full(weights.shape[0], np.nan))
    return _Task(out, counts, variances, scores, targets, labels)


def _emit_task(emit: _Emitter, recon: _Task, base: _Task | None, rows_info: dict[Key, tuple[int, int | None, int]],
               inherent: bool) -> None:
    """Writes the task rows of one road (and its changes from the clean road) with the right interval and test."""
    for key, samples in sorted(recon.samples.items()):
        metric, label, attribute, grp = key
        n, n_pos, k = rows_info[key]
        if metric in TASK_METRICS:
            how = "percentile" if label == "mean" else "delong" if metric == "auroc" else "wilson"
            emit(key, samples, n, n_pos, how=how, counts=recon.counts.get(key), variance=recon.variances.get(key))
        elif metric.endswith("_diff"):
            emit(key, samples, n, n_pos, how="normal", k=k, test=inherent)
        else:
            emit(key, samples, n, n_pos)
        if base is None:
            continue
        added = samples - base.samples[key]
        name = (f"{metric}_added", label, attribute, grp)
        if metric == "auroc" and attribute == "all" and label != "mean":  # DeLong's own case: paired, same cases
            j = list(recon.labels).index(label)
            variance = delong.paired_difference(recon.scores[:, j], base.scores[:, j], recon.targets[:, j])[1]
            emit(name, added, n, n_pos, how="paired delong", test=True, variance=variance)
        elif metric in TASK_METRICS or metric.endswith("_diff"):
            tested = metric.endswith("_diff") or (attribute == "all" and metric in CONTRASTED)
            emit(name, added, n, n_pos, how="normal", k=k, test=tested)
        else:
            emit(name, added, n, n_pos)


def _worst(emit: _Emitter, task: _Task, labels: Sequence[str], groups: list[tuple[str, str, np.ndarray]],
           attributes: Sequence[str]) -> None:
    """The worst group of each per-group task metric, chosen on the point estimate."""
    sizes = {(a, g): int(m.sum()) for a, g, m in groups}
    for label in (*labels, "mean"):
        for attribute in attributes:
            names = [g for a, g, _ in groups if a == attribute]
            for metric in TASK_METRICS:
                if metric in NO_WORST:
                    continue
                point = np.array([task.samples[metric, label, attribute, g][0] for g in names])
                if np.all(np.isnan(point)):
                    continue
                pick = names[int(np.nanargmax(point) if metric in catalogue.HIGHER_IS_WORSE else np.nanargmin(point))]
                emit((f"worst_{metric}", label, attribute, pick), task.samples[metric, label, attribute, pick],
                     sizes[attribute, pick])


def _group_means(values: np.ndarray, groups: list[tuple[str, str, np.ndarray]], weights: np.ndarray,
                 mins: Minimums) -> dict[tuple[str, str], np.ndarray]:
    """Bootstrap rows of the mean of `values` (NaN skipped) in every group and every contrast's rest."""
    out = {}
    for attribute, grp, mask in groups:
        small = attribute != "all" and mask.sum() < mins.group_size
        out[attribute, grp] = np.full(weights.shape[0], np.nan) if small else bs.mean(values, weights, mask)
    return out


def _per_unit(emit: _Emitter, metric: str, values: np.ndarray, base_values: np.ndarray | None,
              groups: list[tuple[str, str, np.ndarray]], weights: np.ndarray, attributes: Sequence[str],
              mins: Minimums, tested: bool, inherent: bool) -> None:
    """A per-image (per-patient) metric by group: means, signed contrasts, folded gap; for Dice the skewed
    error ratio (1 − min Dice)/(1 − max Dice); with a clean road, each one's paired change."""
    n_all = len(values)

    def road(v: np.ndarray) -> dict[Key, np.ndarray]:
        means = _group_means(v, groups, weights, mins)
        out: dict[Key, np.ndarray] = {(metric, "", a, g): s for (a, g), s in means.items()}
        for attribute in attributes:
            for c in contrasts(groups, attribute):
                first = means[attribute, c.name.split(MINUS)[0]]
                if c.k > 1:
                    small = c.other.sum() < mins.group_size
                    other = np.full(weights.shape[0], np.nan) if small else bs.mean(v, weights, c.other)
                else:
                    other = means[attribute, c.name.split(MINUS)[1]]
                out[f"{metric}_diff", "", attribute, c.name] = first - other
            stack = np.stack([means[attribute, g] for a, g, _ in groups if a == attribute])
            out[f"{metric}_gap", "", attribute, ""] = _spread_ratio(stack)[0]
            if metric == "dice":
                valid = ~np.isnan(stack)
                hi = np.where(valid, stack, -np.inf).max(0)
                lo = np.where(valid, stack, np.inf).min(0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["dice_skewed_error_ratio", "", attribute, ""] = np.where(
                        (valid.sum(0) >= 2) & (hi < 1), (1 - lo) / (1 - hi), np.nan)
        return out

    recon = road(values)
    base = road(base_values) if base_values is not None else None
    sizes = {(a, g): int(m.sum()) for a, g, m in groups}
    ks = {(a, c.name): (int((c.first | c.other).sum()), c.k) for a in attributes for c in contrasts(groups, a)}
    for key, samples in recon.items():
        name, _, attribute, grp = key
        if name == metric:
            n, k = sizes[attribute, grp], 1
        else:
            n, k = ks.get((attribute, grp), (n_all, 1))
        diff = name.endswith("_diff")
        emit(key, samples, n, how="normal" if diff else "percentile", k=k, test=diff and tested and inherent)
        if base is not None:
            change = name == metric or diff
            emit((f"{name}_added", "", attribute, grp), samples - base[key], n,
                 how="normal" if change else "percentile", k=k,
                 test=tested and (diff or (name == metric and attribute == "all")))


def _row_info(task: _Task, targets: np.ndarray, labels: Sequence[str], groups: list[tuple[str, str, np.ndarray]],
              attributes: Sequence[str]) -> dict[Key, tuple[int, int | None, int]]:
    """(n units, n positives (None for the label mean), contrasts k) behind each task statistic."""
    masks = {(a, g): m for a, g, m in groups}
    for attribute in attributes:
        for c in contrasts(groups, attribute):
            masks[attribute, c.name] = c.first | c.other
    ks = {(a, c.name): c.k for a in attributes for c in contrasts(groups, a)}
    everyone = np.ones(len(targets), bool)
    info = {}
    for key in task.samples:
        _, label, attribute, grp = key
        mask = masks.get((attribute, grp), masks.get((attribute, "all"), everyone)) if grp else everyone
        n_pos = None if label == "mean" else int(np.nansum(targets[mask, list(labels).index(label)] == 1))
        info[key] = (int(mask.sum()), n_pos, ks.get((attribute, grp), 1))
    return info


def summarise_cell(rows: pd.DataFrame, labels: Sequence[str], thresholds: dict[str, float], *,
                   clean: pd.DataFrame | None = None, attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                   n_resamples: int = 1000, ci_level: float = 0.95, min_group_size: int = 10,
                   min_positives: int = 5, min_negatives: int = 5, seed: int = 0) -> pd.DataFrame:
    """Aggregates of one cell's per-unit rows (wide: score:<label>, target:<label>, psnr, …).

    `clean` holds the same units on the clean road for a reconstructed cell (then `_added` rows
    are paired changes); None marks the clean road itself, whose signed differences are tested
    (the bias the diagnostic model already has). Columns: `COLUMNS`; `dropped` is the share of
    resamples in which a statistic had no value although its estimate has one.
    """
    rows = rows.sort_values("image_id").reset_index(drop=True)
    if clean is not None:
        clean = clean.sort_values("image_id").reset_index(drop=True)
        if not np.array_equal(clean["image_id"].to_numpy(), rows["image_id"].to_numpy()):
            raise ValueError("clean and reconstructed rows cover different images; cannot pair them")
    weights = resampling.plan(rows, attributes, n_resamples, seed).astype(np.float64)  # float64: means, ECE
    groups = list(iter_groups(rows, attributes))
    mins = Minimums(min_group_size, min_positives, min_negatives)
    emit = _Emitter(ci_level, resampling.clustered(rows))
    inherent = clean is None

    for metric in (*QUALITY_METRICS, *SEGMENTATION_METRICS, *UNCERTAINTY_METRICS):
        if metric not in rows or rows[metric].isna().all():
            continue
        values = rows[metric].to_numpy(dtype=float)
        values = np.where(np.isinf(values), np.nan, values)
        base = None
        if metric in SEGMENTATION_METRICS and clean is not None and metric in clean and clean[metric].notna().any():
            base = clean[metric].to_numpy(dtype=float)
        _per_unit(emit, metric, values, base, groups, weights, attributes, mins,
                  tested=metric in SEGMENTATION_METRICS, inherent=inherent)

    targets = rows[[f"target:{lb}" for lb in labels]].to_numpy(dtype=float)
    thr = [thresholds[lb] for lb in labels]
    args = (targets, thr, labels, groups, weights, attributes, mins)
    recon = _task(rows[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), *args)
    base_task = None if clean is None else _task(clean[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), *args)
    _emit_task(emit, recon, base_task, _row_info(recon, targets, labels, groups, attributes), inherent)
    _worst(emit, recon, labels, groups, attributes)
    return pd.DataFrame(emit.rows, columns=COLUMNS)
