"""What a study shows, in sentences with the numbers they quote: the panel that heads Overview and the report.

Written from the stored aggregates only (estimates, bootstrap intervals, q-values), through the
run's own description (`results.RunView`: headline quality and task metrics, level name, unit and
direction), so no sentence branches on a modality's name. Each finding carries the numbers it
quotes, keyed by name, so a test can hold them against the store.

Three kinds, in order:
- **degradation** (one per reconstructor): how far image quality moved from the mildest to the
  most degraded level, and the headline task's paired change against the clean images at both;
- **ranking**: where the best-quality reconstructor at a level is not the best at the task (or
  that they agree at every level);
- **added bias**: which reconstructor × level changed a subgroup difference significantly in the
  primary test family (Benjamini–Hochberg q < 0.05 within it), or that none did;
- **hallucination** (where the caller hands over the known-truth checks of the most degraded level):
  how often the diagnostic model, judging each reconstruction, finds a lesion that is not there or
  loses one it found on the clean image, per reconstructor, most often first, and for the worst one
  by subgroup — a mean AUROC can hide a reconstruction that invents findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recon_core.fairness.hallucinations import DIAGNOSTIC
from recon_core.metrics import catalogue
from recon_core.modalities import Headline
from recon_core.results import HallucinationCheck, RunView, interval_text, overall
from recon_core.store import CLEAN
from recon_core.tables import attribute_text

TITLE = "What this study shows"
"""The panel's heading on Overview and in the report."""
SIGNIFICANT = 0.05
"""The q-value below which a test of the primary family is called significant."""
LISTED = 5
"""At most this many significant cells are named; the rest are counted."""
PRIMARY = "primary"


@dataclass(frozen=True)
class Finding:
    """One sentence of the panel: its kind, the text, and every number it quotes (by name)."""

    kind: str
    """'degradation', 'ranking', 'added_bias' or 'hallucination'."""
    text: str
    numbers: dict[str, float] = field(default_factory=dict)
    reconstructor: str = ""
    """The reconstructor it is about ('' for a finding about several)."""


def _value(agg: pd.DataFrame, reconstructor: str, level: float, metric: str, label: str) -> pd.Series | None:
    """The stored overall row of `metric` for one cell (the clean road at level 0), or None when absent."""
    rows = overall(agg, metric, label)
    rows = rows[(rows.reconstructor == reconstructor) & (rows.level == level)]
    if rows.empty or not np.isfinite(rows.estimate.iloc[0]):
        return None
    return rows.iloc[0]


def _numbers(prefix: str, row: pd.Series) -> dict[str, float]:
    """A stored row's estimate and interval as quoted numbers: {prefix: e, prefix_low: lo, prefix_high: hi}."""
    return {prefix: float(row.estimate), f"{prefix}_low": float(row.ci_low), f"{prefix}_high": float(row.ci_high)}


def _who(run: RunView, reconstructor: str) -> str:
    """A reconstructor as a sentence names it: 'none (the degraded image)' for one that returns its input."""
    return f"{reconstructor} (the degraded image)" if reconstructor in run.returns_degraded else reconstructor


def _unit(headline: Headline) -> str:
    """' dB' for PSNR; '' for a metric without a unit."""
    unit = catalogue.BY_NAME[headline.metric].unit if headline.metric in catalogue.BY_NAME else ""
    return f" {unit}" if unit else ""


def _name(metric: str) -> str:
    """'PSNR' for psnr: the catalogue's label without its unit (the metric's id where it is not catalogued)."""
    return catalogue.BY_NAME[metric].label if metric in catalogue.BY_NAME else metric


def degradation(agg: pd.DataFrame, run: RunView, reconstructor: str, mild: float, worst: float) -> Finding | None:
    """How far quality moved from the mildest to the most degraded level, and the task's change against clean.

    The quality endpoints are each level's estimate with its interval (the drop between them is their
    difference); the task change is the stored paired `<task>_added` (reconstructed − clean) with its interval.
    None where the cell's quality is not stored at both levels.
    """
    quality, task = run.quality, run.tasks[0]
    first, last = _value(agg, reconstructor, mild, quality.metric, quality.label), \
        _value(agg, reconstructor, worst, quality.metric, quality.label)
    if first is None or last is None:
        return None
    unit, level_unit = _unit(quality), run.level.unit
    change = float(last.estimate - first.estimate)
    verb = "fell" if change < 0 else "rose"
    if mild == worst:
        text = (f"{_who(run, reconstructor)}: {_name(quality.metric)} "
                f"{interval_text(first.estimate, first.ci_low, first.ci_high)}{unit} at {worst:g} {level_unit}")
    else:
        text = (f"{_who(run, reconstructor)}: {_name(quality.metric)} {verb} {abs(change):.1f}{unit} "
                f"from {mild:g} to {worst:g} {level_unit} "
                f"({interval_text(first.estimate, first.ci_low, first.ci_high)} → "
                f"{interval_text(last.estimate, last.ci_low, last.ci_high)}{unit})")
    numbers = {"quality_change": change, **_numbers("quality_mild", first), **_numbers("quality_worst", last)}
    clean = _value(agg, CLEAN, 0.0, task.metric, task.label)
    changes = []
    for name, level in (("mild", mild), ("worst", worst)) if mild != worst else (("worst", worst),):
        added = _value(agg, reconstructor, level, f"{task.metric}_added", task.label)
        if added is None:
            continue
        numbers |= _numbers(f"task_added_{name}", added)
        changes.append(f"{interval_text(added.estimate, added.ci_low, added.ci_high, signed=True)} at {level:g}")
    if changes:
        base = f" ({clean.estimate:.3f} there)" if clean is not None else ""
        text += f"; its {task.axis} changed by {' and '.join(changes)} against the clean images{base}"
        if clean is not None:
            numbers["task_clean"] = float(clean.estimate)
    return Finding("degradation", text + ".", numbers, reconstructor)


def _best(agg: pd.DataFrame, headline: Headline, reconstructors: Sequence[str], level: float) -> pd.Series | None:
    """The stored row of the reconstructor best at `headline` at one level (by its estimate and direction)."""
    rows = overall(agg, headline.metric, headline.label)
    rows = rows[rows.reconstructor.isin(reconstructors) & (rows.level == level) & np.isfinite(rows.estimate)]
    if rows.empty:
        return None
    higher = catalogue.source(headline.metric).higher_is_better
    return rows.loc[rows.estimate.idxmax() if higher else rows.estimate.idxmin()]


def rankings(agg: pd.DataFrame, run: RunView, reconstructors: Sequence[str], levels: Sequence[float]) -> Finding | None:
    """Where the reconstructor with the best quality is not the one best at the headline task, level by level.

    Says whether the two intervals overlap (then the ranking by the task is not settled). One finding
    for all levels; None with fewer than two reconstructors.
    """
    if len(reconstructors) < 2:
        return None
    quality, task = run.quality, run.tasks[0]
    quality_name, unit = _name(quality.metric), _unit(quality)
    parts, numbers, compared = [], {}, 0
    for level in levels:
        best_q, best_t = _best(agg, quality, reconstructors, level), _best(agg, task, reconstructors, level)
        if best_q is None or best_t is None:
            continue
        compared += 1
        if best_q.reconstructor == best_t.reconstructor:
            continue
        other = _value(agg, best_q.reconstructor, level, task.metric, task.label)
        if other is None:
            continue
        overlap = other.ci_high >= best_t.ci_low and best_t.ci_high >= other.ci_low
        parts.append(f"at {level:g} {run.level.unit}, {_who(run, best_q.reconstructor)} has the best {quality_name} "
                     f"({interval_text(best_q.estimate, best_q.ci_low, best_q.ci_high)}{unit}) but "
                     f"{_who(run, best_t.reconstructor)} the best {task.axis} "
                     f"({interval_text(best_t.estimate, best_t.ci_low, best_t.ci_high)}, against "
                     f"{interval_text(other.estimate, other.ci_low, other.ci_high)} for {best_q.reconstructor}"
                     f"{'; the intervals overlap' if overlap else ''})")
        tag = f"{level:g}"
        numbers |= {f"quality_best@{tag}": float(best_q.estimate), **_numbers(f"task_best@{tag}", best_t),
                    **_numbers(f"task_of_quality_best@{tag}", other)}
    if not compared:
        return None
    if not parts:
        return Finding("ranking", f"{quality_name} and {task.axis} rank the reconstructors alike: at every "
                                  "level shown the one with the best image quality is also the best at the task.")
    return Finding("ranking", f"{quality_name} and {task.axis} disagree on the ranking: " + "; ".join(parts)
                   + ".", numbers)


def added_bias(agg: pd.DataFrame, run: RunView, reconstructors: Sequence[str], levels: Sequence[float]) -> Finding:
    """The reconstructor × level cells whose primary test has q < 0.05 (Benjamini–Hochberg within the primary
    family), named with the change and its interval; 'none' when no test is significant.

    The family and its size are named; a run whose q-values are not computed yet (still running) says so.
    """
    statistic = catalogue.label(run.primary_test) if run.primary_test else "the headline difference"
    tests = agg[(agg.family == PRIMARY) & agg.p_value.notna()] if "family" in agg else agg.iloc[:0]
    family = (f"the {PRIMARY} test family ({statistic}, {len(tests)} tests; q by Benjamini–Hochberg within "
              "the family)")
    if tests.empty or tests.q_value.isna().all():
        return Finding("added_bias", f"Added subgroup gaps: not tested yet — the q-values of {family} are computed "
                                     "once the run is complete.", {"tests": float(len(tests)), "significant": 0.0})
    shown = tests[tests.reconstructor.isin(reconstructors) & tests.level.isin(levels)]
    hits = shown[shown.q_value < SIGNIFICANT].sort_values("q_value")
    numbers = {"tests": float(len(tests)), "significant": float(len(hits))}
    if hits.empty:
        return Finding("added_bias", f"Added subgroup gaps: none — no reconstructor at any level shown changes a "
                                     f"subgroup difference with q < {SIGNIFICANT:g} in {family}.", numbers)
    named = []
    for i, row in enumerate(hits.head(LISTED).itertuples()):
        finding = f"{row.label}, " if row.label not in ("", "mean") else ""
        named.append(f"{row.reconstructor} at {row.level:g} {run.level.unit} ({finding}{row.grp}: "
                     f"{interval_text(row.estimate, row.ci_low, row.ci_high, signed=True)}, q {row.q_value:.3f})")
        numbers |= {f"estimate_{i}": float(row.estimate), f"q_{i}": float(row.q_value)}
    more = f", and {len(hits) - LISTED} more" if len(hits) > LISTED else ""
    cells = hits[["reconstructor", "level"]].drop_duplicates()
    return Finding("added_bias", f"Added subgroup gaps: {len(hits)} test{'s' if len(hits) > 1 else ''} in "
                                 f"{len(cells)} reconstructor × level cell{'s' if len(cells) > 1 else ''} "
                                 f"{'have' if len(hits) > 1 else 'has'} q < {SIGNIFICANT:g} in {family}: "
                   + "; ".join(named) + more + ".", numbers)


KIND_VERBS = {"invented": ("finds a lesion that is not there", "of the images without one where the clean image "
                                                                "showed none"),
              "erased": ("loses a lesion it found on the clean image", "of the images whose lesion the clean image "
                                                                       "showed")}
"""How a hallucination kind reads in a sentence: what the model does, and the denominator of its rate."""


def _percent(rate: float, low: float, high: float) -> str:
    """'44.4 % [41.2, 47.6]': a share and its interval in percent."""
    return f"{100 * rate:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def hallucinations(checks: Mapping[str, HallucinationCheck], run: RunView, level: float,
                   attribute: str = "sex", ci_level: float = 0.95) -> Finding | None:
    """How often the diagnostic model, on each reconstruction at `level`, invents or loses a lesion of known truth.

    `checks` maps reconstructors to their stored-row checks at that level (`results.hallucination_rates`
    with `attribute` among its groups). Per kind, reconstructors with a rate are listed most often first;
    the first is split by `attribute`'s groups. Descriptive: intervals (at `ci_level`, the level the checks
    were computed at), no test. None where no check has rates (a cohort without known lesion sites) or no
    kind happens at all.
    """
    rates = {r: c.rates[c.rates.detector == DIAGNOSTIC] for r, c in checks.items() if not c.unavailable}
    sentences, numbers = [], {}
    for kind, (does, among) in KIND_VERBS.items():
        everyone = {r: rows[(rows.kind == kind) & (rows.attribute == "all")] for r, rows in rates.items()}
        everyone = {r: row.iloc[0] for r, row in everyone.items() if len(row) and np.isfinite(row.rate.iloc[0])}
        numbers |= {f"{kind}@{r}": float(row.rate) for r, row in everyone.items()}
        ranked = sorted((r for r in everyone if r not in run.returns_degraded), key=lambda r: -everyone[r].rate)
        if not ranked or everyone[ranked[0]].rate == 0:
            continue
        top, row = ranked[0], everyone[ranked[0]]
        numbers |= {f"{kind}@{top}_low": float(row.ci_low), f"{kind}@{top}_high": float(row.ci_high)}
        groups = rates[top][(rates[top].kind == kind) & (rates[top].attribute == attribute)
                            & np.isfinite(rates[top].rate)]
        numbers |= {f"{kind}@{top}:{g.grp}": float(g.rate) for g in groups.itertuples()}
        split = "; ".join(f"{g.grp} {_percent(g.rate, g.ci_low, g.ci_high)}" for g in groups.itertuples())
        others = ", ".join(f"{r} {_percent(everyone[r].rate, everyone[r].ci_low, everyone[r].ci_high)}"
                           for r in ranked[1:])
        reference = "; ".join(f"{_who(run, r)} {_percent(everyone[r].rate, everyone[r].ci_low, everyone[r].ci_high)}"
                              for r in everyone if r in run.returns_degraded)
        share = _percent(row.rate, row.ci_low, row.ci_high)
        sentences.append(f"on {top}'s images the diagnostic model {does} in {share} {among} "
                         f"({int(row['count'])} of {int(row['of'])}"
                         + (f"; by {attribute_text(attribute).lower()}: {split}" if split else "") + ")"
                         + (f"; then {others}" if others else "")
                         + (f"; without reconstruction, {reference}" if reference else ""))
    if not sentences:
        return None
    return Finding("hallucination", f"Known truth at {level:g} {run.level.unit}: " + ". And ".join(sentences)
                   + f". Descriptive ({100 * ci_level:g} % bootstrap intervals, no test); the cases are on the "
                   "Failure cases page.",
                   numbers)


def study_findings(agg: pd.DataFrame, run: RunView, reconstructors: Sequence[str] | None = None,
                   levels: Sequence[float] | None = None, checks: Mapping[str, HallucinationCheck] | None = None,
                   attribute: str = "sex", ci_level: float = 0.95) -> list[Finding]:
    """The panel's findings for the chosen reconstructors and levels (default: all the run holds), in order:
    one degradation per reconstructor, the ranking, the added bias and, where `checks` (the known-truth checks
    of the most degraded level, by reconstructor) are given, the hallucinations. Empty before any reconstructed
    cell lands."""
    cells = agg[agg.reconstructor != CLEAN]
    if reconstructors is None:
        present = set(cells.reconstructor)
        reconstructors = [r for r in run.reconstructors if r in present] + sorted(present - set(run.reconstructors))
    levels = run.mildest_first(sorted(set(cells.level) if levels is None else set(levels)))
    if not levels or not reconstructors or not run.tasks:
        return []
    found = [f for r in reconstructors if (f := degradation(agg, run, r, levels[0], levels[-1])) is not None]
    ranking = rankings(agg, run, reconstructors, levels)
    invented = hallucinations({r: c for r, c in checks.items() if r in reconstructors}, run, levels[-1],
                              attribute, ci_level) if checks else None
    return [*found, *([ranking] if ranking else []), added_bias(agg, run, reconstructors, levels),
            *([invented] if invented else [])]
