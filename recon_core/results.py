"""The read model: stored runs as the dashboard pages, the HTML report and the CLI show them.

Everything a view needs to know about a run comes from the store: its modality's description
(level axis and direction, headline curves, group and gap metrics, unit of statistics) is
stored with the run, so no view branches on a modality's name. Runs stored before the
description existed get it from their modality object and their stored config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from recon_core import plots
from recon_core.config import ConfigError, parse_config, split_variant
from recon_core.fairness import STATISTICS_VERSION, hallucinations
from recon_core.fairness.calibration import calibration_curve as pooled_curve
from recon_core.fairness.correlation import POOLED, WITHIN, level_scope
from recon_core.fairness.multiple_testing import BY_NAME as FAMILIES
from recon_core.fairness.summary import MINUS
from recon_core.metrics import catalogue
from recon_core.modalities import Headline, get_modality
from recon_core.physics.base import LevelAxis
from recon_core.registry import UnknownNameError
from recon_core.store import CLEAN, Store, queries


@dataclass(frozen=True)
class RunView:
    """One stored run as every view draws it."""

    key: str
    name: str
    modality: str
    title: str
    status: str
    message: str
    cells_done: int
    level: LevelAxis
    unit: str
    unit_text: str
    curves: tuple[Headline, ...]
    table_metrics: tuple[Headline, ...]
    group_metrics: tuple[Headline, ...]
    gap_metrics: tuple[Headline, ...]
    added_metrics: tuple[str, ...]
    returns_degraded: tuple[str, ...]
    """Reconstructors whose output is the degraded image itself (none, zero_filled): shown once, as 'degraded'."""
    reconstructors: tuple[str, ...] = ()
    """The run's reconstructors in its config's order: the order their colours are given in."""
    primary_test: str = ""
    """The modality's headline test (e.g. 'tpr_diff_added'): the run's primary family."""
    statistics: int = 0
    """The statistics version its aggregates were computed with (0: before versions were stored)."""

    @property
    def statistics_outdated(self) -> bool:
        """Its aggregates come from older statistics (recomputed from stored rows when the run is run again)."""
        return self.statistics < STATISTICS_VERSION

    @property
    def colours(self) -> dict[str, str]:
        """One colour per reconstructor of this run (the clean road gray), the same on every chart and export."""
        return plots.reconstructor_colours(self.reconstructors, CLEAN)

    @property
    def level_label(self) -> str:
        """'dose (photons/pixel)'."""
        return f"{self.level.name} ({self.level.unit})"

    @property
    def quality(self) -> Headline:
        """The headline image-quality metric (first curve)."""
        return self.curves[0]

    @property
    def tasks(self) -> tuple[Headline, ...]:
        """The headline task metrics (the other curves)."""
        return self.curves[1:]

    def worst_level(self, levels: Sequence[float]) -> float:
        """The most degraded of `levels` (lowest dose, highest acceleration)."""
        return self.level.worst_first(levels)[0]

    def mildest_first(self, levels: Sequence[float]) -> list[float]:
        """Levels from the mildest to the most degraded."""
        return self.level.worst_first(levels)[::-1]


PLAIN = {"unit": "image", "unit_text": "test images",
         "curves": [asdict(Headline("psnr", "", "Image quality: PSNR", "PSNR (dB)")),
                    asdict(Headline("auroc", "mean", "Task: mean AUROC", "mean AUROC"))],
         "table_metrics": [], "group_metrics": [asdict(Headline("tpr", "mean", "Sensitivity (TPR)", "TPR"))],
         "gap_metrics": [asdict(Headline("eo_gap", "mean", "Equal-opportunity gap", "max − min TPR"))],
         "added_metrics": ["auroc_added", "eo_gap_added"], "returns_degraded": []}
"""How a run of a modality this installation does not know is drawn: its stored rows, PSNR and AUROC."""


def describe(store: Store, row: pd.Series) -> dict:
    """A run's stored description; for a run stored before descriptions existed, its modality's description.

    Such a run is described from its stored config read for its types only, so a config that no
    longer passes today's checks (a removed reconstructor, say) still shows; a modality this
    installation does not know is drawn plainly, with the stored level name and unit.
    """
    if isinstance(row.description_json, str) and row.description_json:
        info = json.loads(row.description_json)
        if "reconstructors" not in info:  # stored before descriptions named them
            stored = queries.run_config(store, row.config_hash) or {}
            info["reconstructors"] = list(stored.get("reconstructors", {}).get("names", []))
        return info
    try:
        return get_modality(row.modality).describe(parse_config(queries.run_config(store, row.config_hash)))
    except (UnknownNameError, ConfigError, KeyError):  # KeyError: a physics model or source no longer known
        level = {"name": row.level_name, "unit": row.level_unit, "minimum": 0.0, "minimum_included": False,
                 "higher_is_worse": False, "note": ""}
        names = list((queries.run_config(store, row.config_hash) or {}).get("reconstructors", {}).get("names", []))
        return PLAIN | {"modality": row.modality, "title": str(row.modality), "level": level, "reconstructors": names}


def _headlines(items: list[dict]) -> tuple[Headline, ...]:
    return tuple(Headline(**item) for item in items)


def runs(store: Store) -> pd.DataFrame:
    """Every stored run, newest first, with cell counts and its modality's title."""
    table = queries.runs(store)
    return table.assign(title=[modality_title(m) for m in table.modality])


def run_view(store: Store, key: str) -> RunView:
    """The view of one stored run (KeyError if the store holds no such run)."""
    table = queries.runs(store)
    if key not in set(table.config_hash):
        raise KeyError(f"no run {key} in {store.path}")
    row = table[table.config_hash == key].iloc[0]
    info = describe(store, row)
    message = "" if row.message is None or row.message != row.message else str(row.message)
    return RunView(row.config_hash, row["name"], row.modality, info["title"], str(row.status), message,
                   int(row.cells_done), LevelAxis(**info["level"]), info["unit"], info["unit_text"],
                   _headlines(info["curves"]), _headlines(info["table_metrics"]),
                   _headlines(info["group_metrics"]), _headlines(info["gap_metrics"]),
                   tuple(info["added_metrics"]), tuple(info["returns_degraded"]), tuple(info["reconstructors"]),
                   info.get("primary_test", ""), int(row.statistics) if pd.notna(row.statistics) else 0)


def modality_title(name: str) -> str:
    """'X-ray (low-dose)' for 'xray'; the name itself for a modality this installation does not know."""
    try:
        return get_modality(name).title
    except UnknownNameError:
        return name


def overall(agg: pd.DataFrame, metric: str, label: str = "") -> pd.DataFrame:
    """Rows of one metric over everyone (attribute 'all')."""
    return agg[(agg.metric == metric) & (agg.label == label) & (agg.attribute == "all")]


def by_group(agg: pd.DataFrame, metric: str, label: str, attribute: str) -> pd.DataFrame:
    """Rows of one metric for the groups (or the gap) of one attribute."""
    return agg[(agg.metric == metric) & (agg.label == label) & (agg.attribute == attribute)]


def added(agg: pd.DataFrame, run: RunView, level: float, attribute: str) -> pd.DataFrame:
    """The run's 'added by reconstruction' headline rows at one level: overall, the attribute's signed
    differences (the primary test per finding, the others as label means) and its folded gaps."""
    rows = agg[agg.metric.isin(run.added_metrics) & (agg.level == level) & agg.attribute.isin(["all", attribute])]
    summary = rows.label.isin(["mean", ""])
    plain = summary & rows.grp.isin(["all", ""])
    contrast = rows.metric.str.endswith("_diff_added") & rows.grp.str.contains(MINUS, regex=False)
    return rows[plain | (contrast & (summary | (rows.metric == run.primary_test)))]


def test_text(p_value: float, q_value: float, family: str | None) -> str:
    """'p 0.003 · q 0.041 (primary)'; '' for a statistic that is not a test."""
    if p_value is None or p_value != p_value:
        return ""

    def value(name: str, v: float) -> str:
        return f"{name} < 0.0001" if v < 1e-4 else f"{name} {v:.2g}" if v < 0.01 else f"{name} {v:.3f}"

    text = value("p", p_value)
    if family and isinstance(family, str):
        text += f" · {value('q', q_value)} ({family})" if q_value == q_value else f" ({family})"
    elif p_value == 1:
        text += " (nothing varied: in no family)"
    return text


def added_table(rows: pd.DataFrame, agg: pd.DataFrame, attribute: str, order: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of `added(...)` as shown by Overview and the report: human names, 'change [CI]', the test behind it.

    Ordered by reconstructor, then statistic (in `order`, the run's added metrics), finding (the mean last)
    and groups.
    """
    rank = {m: i for i, m in enumerate(order)}
    rows = rows.assign(_m=rows.metric.astype(str).map(lambda m: rank.get(m, len(rank))),
                       _l=rows.label.astype(str).map(lambda lb: (lb == "mean", lb))).sort_values(
        ["reconstructor", "_m", "_l", "grp"]).drop(columns=["_m", "_l"])
    return pd.DataFrame({
        "reconstructor": rows.reconstructor.to_numpy(),
        "statistic": [catalogue.label(m) for m in rows.metric],
        "finding": ["mean over findings" if lb == "mean" else lb or "—" for lb in rows.label],
        "groups": [g if g not in ("", "all") else "everyone" if a == "all" else
                   "across groups" if "ratio" in str(m) else "max − min"
                   for g, a, m in zip(rows.grp, rows.attribute, rows.metric, strict=True)],
        "change [95 % CI]": [interval_text(e, lo, hi, signed=True)
                             for e, lo, hi in zip(rows.estimate, rows.ci_low, rows.ci_high, strict=True)],
        "test": [test_text(p, q, f) for p, q, f in zip(rows.p_value, rows.q_value, rows.family, strict=True)],
        "⚠ rate at a bound": flag_collapsed(rows, agg, attribute).to_numpy()})


def families(agg: pd.DataFrame) -> pd.DataFrame:
    """The run's test families as stored: name, question, number of tests, how many have q < 0.05."""
    tested = agg[agg.family.notna() & agg.p_value.notna()] if "family" in agg else agg.iloc[:0]
    out = [{"family": name, "question": FAMILIES[name].question, "tests": len(part),
            "q < 0.05": int((part.q_value < 0.05).sum())}
           for name, part in tested.groupby("family", sort=False)]
    order = list(FAMILIES)
    return pd.DataFrame(out, columns=["family", "question", "tests", "q < 0.05"]).sort_values(
        "family", key=lambda s: s.map(order.index)).reset_index(drop=True)


TEST_NOTE = ("p: bootstrap-normal from the resampled units (a change is paired: the same resamples on the clean "
             "and the reconstructed images), so the interval excludes 0 exactly when p is below its level; for "
             "three or more groups each 'group − rest' interval is simultaneous and its p Bonferroni-adjusted. "
             "q: Benjamini–Hochberg within the named family over those p-values, computed once the run is "
             "complete. A change above 0 means the first group's value rose relative to the other's (good for "
             "TPR and AUROC, bad for FPR). Folded max − min gaps are descriptive: no test.")
OUTDATED = ("This run's statistics were computed by an older version of Tandem (folded gaps tested, one test "
            "family per metric). Run its study again to recompute them from the stored rows: no cell is re-run.")
"""Said wherever an outdated run's statistics are shown."""
"""How every star and q-value is made, said once for the pages and the report."""


def collapsed_cells(agg: pd.DataFrame, gap: str, label: str, attribute: str,
                    clean: bool = False) -> dict[tuple[str, float], str]:
    """{(reconstructor, level): which rate saturated} where a rate behind `gap` is the same bound in every group.

    E.g. 'TPR = 1 in every group': the fixed threshold calls every positive case (or none), so a
    gap that shrinks there is a collapse of the decision, not a fairer model. `gap` may end in `_added`.
    `clean` looks at the clean road instead (a difference of exactly 0 there says nothing either).
    """
    base = gap.removesuffix("_added")
    if base not in catalogue.NAMED_GAPS and not base.endswith("_gap") and not base.endswith("_diff"):
        return {}
    rates = ("tpr", "fpr") if base in ("eodd", "eodd_diff") else (catalogue.source(base).name,)
    rows = agg[agg.metric.isin([r for r in rates if r in catalogue.THRESHOLD_RATES]) & (agg.label == label)
               & (agg.attribute == attribute) & ~agg.grp.isin(["all", ""]) & ((agg.reconstructor == CLEAN) == clean)]
    flagged: dict[tuple[str, float], str] = {}
    for (recon, level, metric), cell in rows.groupby(["reconstructor", "level", "metric"], observed=True):
        values = cell.estimate.to_numpy(dtype=float)
        if len(values) > 1 and np.isfinite(values).all() and np.ptp(values) == 0 and values[0] in (0.0, 1.0):
            text = f"{str(metric).upper()} = {values[0]:g} in every group"
            key = (str(recon), float(level))
            flagged[key] = f"{flagged[key]}; {text}" if key in flagged else text
    return flagged


def flag_collapsed(added_rows: pd.DataFrame, agg: pd.DataFrame, attribute: str) -> pd.Series:
    """Per row of `added(...)`: why its gap change is a collapse ('' where it is not), for the added tables."""
    notes, found = [], {}
    for recon, level, metric, label, attr in zip(added_rows.reconstructor, added_rows.level, added_rows.metric,
                                                 added_rows.label, added_rows.attribute, strict=True):
        if attr != attribute:
            notes.append("")
            continue
        if (metric, label) not in found:
            found[metric, label] = collapsed_cells(agg, str(metric), str(label), attribute)
        notes.append(found[metric, label].get((str(recon), float(level)), ""))
    return pd.Series(notes, index=added_rows.index, dtype=object)


def interval_text(estimate: float, low: float, high: float, signed: bool = False) -> str:
    """'0.812 [0.790, 0.833]' (signed: '+0.012 [−0.004, +0.030]'); '—' where there is no estimate."""
    if estimate is None or np.isnan(estimate):
        return "—"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    bounds = "" if low is None or np.isnan(low) else f" [{fmt.format(low)}, {fmt.format(high)}]"
    return fmt.format(estimate) + bounds


CORRELATION_NOTES = (
    "Pooled: across every reconstructor and level. It mixes levels: the level drives both image quality "
    "and the task, so pooled ρ can be high even when quality says nothing about the task at a given level.",
    "Level: across the reconstructors at that one level. The reconstructors are the units. There are few "
    "of them, so the intervals are wide.",
    "Within levels: the mean of the per-level ρ. It answers: at a given level, does the reconstruction "
    "with the better image quality also do better at the task?",
    "Intervals resample test images; the reconstructors and levels stay fixed.",
)
"""What each scope of the quality–task correlation table means, in plain sentences (page and report)."""

POOLED_SHOWN = f"{POOLED} (confounded by level)"


def correlation_table(corr: pd.DataFrame, levels: Sequence[float] | None = None) -> pd.DataFrame:
    """Stored quality–task correlations as shown: scope, pair, attribute, 'ρ [CI]' (a constant side in words), cells.

    Within levels comes first, then each level (in the order of `levels`, else by value), then the
    pooled rows, named as confounded by the level.
    """
    order = {WITHIN: (0, 0.0)}
    stored = [float(s.removeprefix("level ")) for s in corr.scope if str(s).startswith("level ")]
    for i, level in enumerate(levels if levels is not None else sorted(set(stored))):
        order[level_scope(float(level))] = (1, float(i))
    rank = [order.get(s, (1, float("inf")) if str(s).startswith("level ") else (2, 0.0)) for s in corr.scope]
    corr = corr.assign(_rank=rank).sort_values("_rank", kind="stable")
    rho = [interval_text(e, lo, hi, signed=True) if e == e else "— (a side is constant or has no estimate)"
           for e, lo, hi in zip(corr.estimate, corr.ci_low, corr.ci_high, strict=True)]
    return pd.DataFrame({"scope": corr.scope.replace({POOLED: POOLED_SHOWN}).to_numpy(),
                         "pair": [f"{catalogue.label(x)} ↔ {catalogue.label(y)}"
                                  for x, y in zip(corr.x_metric, corr.y_metric, strict=True)],
                         "attribute": corr.attribute.to_numpy(), "Spearman ρ [95 % CI]": rho,
                         "cells": corr.n_cells.to_numpy()})


def headline_table(store: Store, run: RunView, attribute: str = "sex") -> pd.DataFrame:
    """Per cell: headline quality and task metrics, the first gap by `attribute` and what reconstruction added.

    Values are 'estimate [CI]' strings; columns are the metrics' human names. The clean road
    comes first, then reconstructors, each from the mildest level to the most degraded.
    """
    gap = run.gap_metrics[0]
    wanted = [(h.metric, h.label, "all", h.axis) for h in (*run.curves, *run.table_metrics)]
    wanted += [(gap.metric, gap.label, attribute, f"{gap.title} ({attribute})")]
    wanted += [(f"{h.metric}_added", h.label, "all", f"{h.axis} added") for h in run.tasks]
    wanted += [(f"{gap.metric}_added", gap.label, attribute, f"{gap.title} added")]
    agg = queries.aggregates(store, run.key, sorted({m for m, *_ in wanted}))
    if agg.empty:
        return pd.DataFrame()
    cells = agg[["reconstructor", "level"]].drop_duplicates()
    order = {lv: i for i, lv in enumerate(run.mildest_first(cells.level.unique()))}
    cells = cells.assign(first=cells.reconstructor != CLEAN, rank=cells.level.map(order)).sort_values(
        ["first", "reconstructor", "rank"]).drop(columns=["first", "rank"])
    table = cells.reset_index(drop=True)
    for metric, label, attr, title in wanted:
        rows = agg[(agg.metric == metric) & (agg.label == label) & (agg.attribute == attr) & agg.grp.isin(["all", ""])]
        if rows.empty:
            continue
        values = {(r.reconstructor, r.level): interval_text(r.estimate, r.ci_low, r.ci_high, metric.endswith("_added"))
                  for r in rows.itertuples()}
        table[title] = [values.get((r, lv), "—") for r, lv in zip(table.reconstructor, table.level, strict=True)]
    return table


def _contract_value(key: str, value: object) -> str:
    """One declared contract value in words: lists in brackets, an image size of 0 as the study's own."""
    if key == "image_size" and value == 0:
        return "the study's"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_card_rows(cards: pd.DataFrame, sha_chars: int = 12) -> pd.DataFrame:
    """Model cards (queries.model_cards, runner.model_cards) as shown: the SHA-256 cut to `sha_chars`, and the
    contract in words ('value range: [0, 1]; image size: the study's; …', unset values left out)."""
    contracts = [json.loads(text) if isinstance(text, str) else {} for text in cards.contract_json]
    return pd.DataFrame({
        "role": cards.role, "name": cards.name, "source": cards.source, "location": cards.location,
        "SHA-256": [s[:sha_chars] + ("…" if len(s) > sha_chars else "") if isinstance(s, str) else ""
                    for s in cards.sha256],
        "contract": ["; ".join(f"{k.replace('_', ' ')}: {_contract_value(k, v)}" for k, v in sorted(c.items())
                               if v not in ("", [], {}, None)) for c in contracts]}).reset_index(drop=True)


POSTERIOR_METRICS = catalogue.UNCERTAINTY
"""A sampler's judged posterior: spread calibration (rank correlation, coverage, spread) and sample flip rates."""


def samplers(agg: pd.DataFrame) -> list[str]:
    """The run's reconstructors that drew several posterior samples (their cells carry spread statistics)."""
    return sorted(agg.loc[agg.metric == "spread_error_rho", "reconstructor"].unique())


def posterior_table(agg: pd.DataFrame, attribute: str = "all") -> pd.DataFrame:
    """Per sampler, level and group of `attribute`: each posterior metric's estimate with its CI, long.

    Columns: reconstructor, level, metric, label (human), grp, estimate, ci_low, ci_high, n.
    """
    rows = agg[agg.metric.isin(POSTERIOR_METRICS) & (agg.attribute == attribute)]
    return (rows.assign(label=rows.metric.map(catalogue.label))
            [["reconstructor", "level", "metric", "label", "grp", "estimate", "ci_low", "ci_high", "n"]]
            .sort_values(["reconstructor", "metric", "level", "grp"]).reset_index(drop=True))


def calibration_curve(store: Store, key: str, reconstructor: str, level: float,
                      attributes: Sequence[str] = ()) -> pd.DataFrame:
    """A sampler cell's calibration curve per group: predicted std against RMS error in fixed std bins
    (`fairness.calibration`); empty for a deterministic reconstructor."""
    return pooled_curve(queries.calibration_sums(store, key, reconstructor, level), attributes)


NO_SITES = ("Not available for this cohort: it has no known lesion sites. Only the generated cohorts place a lesion "
            "of known place and size (or a sham site) in every image; real data (CSV, NIfTI, fastMRI) has none.")
"""Why the hallucination check is missing for a run on real data, in words for the pages and the report."""
STORED_BEFORE = ("Not available for this run: its results were stored before Tandem measured lesions at their known "
                 "sites. Run its config again in a new store (or forget the run) to add the check.")
"""Why it is missing for a generated cohort's run stored by an older version."""


@dataclass(frozen=True)
class HallucinationCheck:
    """The hallucination check of one reconstructed cell, or why there is none.

    `rates` has the columns of `fairness.hallucinations.RATE_COLUMNS`: detector ('diagnostic
    model' or 'residual map'), rule (the detector's 'found' rule in words), kind ('erased' or
    'invented'), attribute ('all' for everyone, else the attribute) and grp (its group), rate
    (share, NaN for a group with no eligible image), ci_low / ci_high (bootstrap percentile
    interval), count (images erased / invented) and of (the denominator: images with a lesion
    found on the clean image / images without one where nothing was found on the clean image).
    `unavailable` is '' when there are rates, else why not in words (then `rates` is empty).
    `rules`: each detector's 'found' rule in words (also when unavailable).
    """

    rates: pd.DataFrame
    unavailable: str = ""
    rules: dict[str, str] = field(default_factory=lambda: dict(hallucinations.RULES))


def hallucination_rates(store: Store, key: str, reconstructor: str, level: float, attributes: Sequence[str],
                        n_resamples: int = 1000, ci_level: float = 0.95) -> HallucinationCheck:
    """How often `reconstructor` at `level` erases a known lesion or invents one, per detector and group.

    Computed from the stored per-image rows of the cell and of the clean road (lesion contrast at
    the known site, the classifier's scores with the run's thresholds, or the segmenter's call),
    resampled with the run's seed; `attributes` are the group columns ('sex', 'age_band',
    'sex×age_band'). A run on a cohort without known lesion sites, or a cell not stored, is
    `unavailable` in words. KeyError if the store holds no such run.
    """
    view = run_view(store, key)
    empty = pd.DataFrame(columns=hallucinations.RATE_COLUMNS)
    recon, clean = queries.image_rows(store, key, reconstructor, level), queries.image_rows(store, key, CLEAN, 0.0)
    if recon.empty or clean.empty:
        missing = f"{reconstructor} at {level:g}" if recon.empty else "the clean road"
        return HallucinationCheck(empty, f"The store holds no per-image results for {missing} of this run.")
    if "lesion_contrast" not in recon or "lesion_contrast" not in clean:
        source = ((queries.run_config(store, key) or {}).get("cohort") or {}).get("source", "synthetic")
        return HallucinationCheck(empty, NO_SITES if source != "synthetic" else STORED_BEFORE)
    try:
        finding = get_modality(view.modality).lesion_finding
    except UnknownNameError:  # a modality this installation does not know: only a segmenter's stored call
        finding = None
    seed = int((queries.run_config(store, key) or {}).get("seed", 0))
    table = hallucinations.hallucination_table(clean, recon, queries.thresholds(store, key), finding)
    return HallucinationCheck(hallucinations.hallucination_rates(table, attributes, n_resamples, ci_level, seed))


POSTERIOR_NOTES = (
    "Spread–error rank correlation: per image, the Spearman correlation over its pixels between the posterior's "
    "per-pixel std and the error of the posterior mean; 1 would mean the spread ranks pixels exactly as the error "
    "does, 0 that it says nothing about where the error is.",
    "95 % interval coverage: per image, the share of pixels whose truth lies inside the samples' 95 % prediction "
    "interval; a calibrated posterior covers 0.95, an overconfident one less.",
    "Sample flip rate: per image, the share of posterior samples on which the diagnostic model's call differs "
    "from its call on the reported reconstruction (the posterior mean); a high rate is a call the posterior "
    "does not support.",
    "Intervals are bootstrap intervals over the run's statistical units, at the run's level (evaluation.ci_level); "
    "no test is made on these.",
)
"""What the posterior statistics mean, in plain sentences (page and report)."""

CURVE_NOTE = ("Each point pools the pixels whose predicted std falls in one fixed bin: mean predicted std against "
              "the RMS error of the posterior mean. A calibrated posterior of n samples lies on the dotted line "
              "rmse = std·√(1 + 1/n) (the truth behaves like one more draw); above it the spread is too small "
              "(overconfident), below it too large. With few samples each pixel's std is itself a noisy "
              "estimate, and binning on it puts pixels whose std came out low by chance in the lowest bins: "
              "those bins sit above the line even for a calibrated sampler, so read the middle and upper bins.")
"""How to read a calibration curve of the spread (page and report)."""


def posterior_overview(agg: pd.DataFrame, attribute: str = "all", reconstructors: Sequence[str] | None = None,
                       levels: Sequence[float] | None = None) -> pd.DataFrame:
    """Per sampler, level (and group of `attribute`): each posterior metric as 'estimate [CI]', one column each.

    Rows follow the order of `levels` where given. Columns: reconstructor, level, group (for an
    attribute other than 'all'), then the human names of the posterior metrics the run holds (rank
    correlation, coverage, spread, sample flip rates), n.
    """
    rows = posterior_table(agg, attribute)
    if reconstructors is not None:
        rows = rows[rows.reconstructor.isin(reconstructors)]
    if levels is not None:
        rows = rows[rows.level.isin(levels)]
    index = ["reconstructor", "level", "grp"]
    if rows.empty:
        return pd.DataFrame(columns=[*index[:2], *([] if attribute == "all" else ["group"])])
    shown = rows.assign(value=[_small_interval(e, lo, hi) if m == "posterior_std" else interval_text(e, lo, hi)
                               for m, e, lo, hi in zip(rows.metric, rows.estimate, rows.ci_low, rows.ci_high,
                                                       strict=True)])
    wide = shown.pivot_table(index=index, columns="metric", values="value", aggfunc="first").reset_index()
    n = shown.groupby(index, as_index=False).n.max()
    order = [m for m in POSTERIOR_METRICS if m in wide]
    wide = wide[[*index, *order]].merge(n, on=index).rename(columns={m: catalogue.label(m) for m in order})
    if levels is not None:  # in the order given (the page's and report's: mildest first)
        rank = {float(lv): i for i, lv in enumerate(levels)}
        wide = wide.sort_values(["reconstructor", "level", "grp"], key=lambda s: s.map(rank) if s.name == "level"
                                else s, kind="stable")
    wide = wide.rename(columns={"grp": "group"}).assign(level=lambda f: [f"{lv:g}" for lv in f.level])
    if attribute == "all":
        wide = wide.drop(columns="group")
    return wide.reset_index(drop=True)


def _small_interval(estimate: float, low: float, high: float) -> str:
    """'0.00025 [0.00024, 0.00026]': three significant digits, for values far below 1 (a posterior's spread)."""
    if estimate is None or np.isnan(estimate):
        return "—"
    bounds = "" if low is None or np.isnan(low) else f" [{low:.3g}, {high:.3g}]"
    return f"{estimate:.3g}{bounds}"


def sample_count(store: Store, key: str, reconstructor: str, level: float) -> int:
    """How many posterior samples `reconstructor` drew per image at `level` (0 for a deterministic one)."""
    return queries.sample_draws(store, key, reconstructor, level)


def uncertain_cases(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A sampler cell's images, the least supported calls first: by `metric` ('sample_flip' or
    'sample_dice_flip'), then by mean posterior spread, then id. Images without the metric are left out."""
    if metric not in rows:
        return rows.iloc[:0]
    ranked = rows[rows[metric].notna()]
    keys = [metric, *(["posterior_std"] if "posterior_std" in ranked else []), "image_id"]
    return ranked.sort_values(keys, ascending=[False] * (len(keys) - 1) + [True]).reset_index(drop=True)


def draw_table(samples: pd.DataFrame, reported: dict[str, float], thresholds: dict[str, float]) -> pd.DataFrame:
    """A case's posterior samples, one row each after the reported reconstruction's: each answer and what changed.

    `samples`: the case's rows of `queries.sample_scores` (draw, name, value); `reported`: the answer
    on the reported reconstruction per name (a finding's score, or 'dice'). A finding's call is its
    score against the run's operating threshold; the last column names the findings whose call
    differs from the reported one on that draw.
    """
    names = sorted(set(samples.name) | set(reported))
    wide = samples.pivot_table(index="draw", columns="name", values="value", aggfunc="first").reindex(columns=names)
    table = pd.concat([pd.DataFrame([reported], index=["reported"]).reindex(columns=names),
                       wide.set_axis([f"sample {int(d) + 1}" for d in wide.index])])
    calls = [n for n in names if n in thresholds]

    def changed(row: pd.Series) -> str:
        """The findings whose call on this draw differs from the reported one ('—' for none)."""
        flipped = [n for n in calls if row[n] == row[n] and reported.get(n) == reported.get(n)
                   and (row[n] >= thresholds[n]) != (reported[n] >= thresholds[n])]
        return ", ".join(flipped) if flipped else "—"

    return table.assign(**{"calls that differ from the reported": [
        "" if i == "reported" else changed(r) for i, r in table.iterrows()]}).rename_axis("road").reset_index()


def hallucination_rows(check: HallucinationCheck, reconstructor: str, level: float) -> pd.DataFrame:
    """A cell's hallucination rates as shown: detector, what is counted, group, 'rate [CI]', 'count / of'."""
    rates = check.rates
    what = {"erased": "known lesion erased", "invented": "lesion invented where none was"}
    return pd.DataFrame({
        "reconstructor": reconstructor, "level": f"{level:g}", "detector": rates.detector.to_numpy(),
        "what": [what.get(k, k) for k in rates.kind],
        "group": ["everyone" if a == "all" else str(g) for a, g in zip(rates.attribute, rates.grp, strict=True)],
        "rate [95 % CI]": [interval_text(e, lo, hi) for e, lo, hi in
                           zip(rates.rate, rates.ci_low, rates.ci_high, strict=True)],
        "images": [f"{c} / {o}" for c, o in zip(rates["count"], rates["of"], strict=True)]})


# Mitigation: variant reconstructors ('unet+eodd') judged against their plain-trained base ('unet').

STRATEGIES = {"reweight": "reweighting", "eodd": "equalized-odds loss", "adversarial": "adversarial debiasing",
              "finetune": "plain fine-tuning (control)"}
"""Each mitigation strategy in words (a strategy not listed shows as its own name)."""
ALPHA = 0.05
"""A change counts as significant when its 95 % interval excludes 0 and, where it has one, its q is below this."""
NO_CHANGE = "no significant change"
MITIGATION_NOTE = (
    "Each change is paired: the variant and its plain-trained base reconstruct the same test images at the same "
    "level, and one bootstrap resamples both, so the change is variant − base on identical cases; the clean road "
    "cancels, so it is the change in the bias reconstruction adds. Families: 'mitigation' holds the change of the "
    "modality's headline signed group difference (per finding and contrast), 'mitigation cost' the change for "
    "everyone of the headline task metric (per finding) and of PSNR and SSIM; q is Benjamini–Hochberg within the "
    "family over every variant and level. Other changes with a p belong to no family (read them as exploratory); "
    "folded max − min gaps are descriptive (percentile interval, no test). Verdict: "
    f"'{NO_CHANGE}' where the interval covers 0 (or q ≥ {ALPHA:g} where there is a q); a folded gap narrows "
    "when it falls; a signed difference narrows when its whole interval moves it toward 0 (a move past 0 that "
    "leaves it larger than the base's is a wider gap of the opposite sign; an interval across that point leaves "
    "the direction open); PSNR, SSIM and the task show a gain or a cost.")
"""What the mitigation table's changes, families and verdicts mean, said once for the page and the report."""
NO_VARIANTS = (
    "This run has no mitigation variants. A variant is one of the run's trained reconstructors fine-tuned with a "
    "bias-mitigation strategy, named <base>+<strategy>: reweight (training images drawn so that every group is "
    "seen equally often), eodd (an equalized-odds penalty through the frozen classifier; on MRI the soft Dice "
    "gap of the frozen segmenter), adversarial (an adversary that must not tell the "
    "groups apart) or finetune (the same fine-tuning without mitigation: the control). List variants beside their "
    "base (a trained network: unet, gan, or your own TorchScript or entry-point model) under reconstructors.names, "
    "and tune the fine-tuning under reconstructors.mitigation (the attribute whose groups it balances, steps, "
    "weights); the run then compares each variant with its base on the same test images. For example:")
VARIANT_EXAMPLE = """reconstructors:
  names: [none, unet, unet+finetune, unet+reweight, unet+eodd, unet+adversarial]
  mitigation: {attribute: sex, steps: 200}
"""
"""The empty state of the Mitigation page: how to declare variants in a config (words, then a YAML example)."""


def variants(names: Sequence[str]) -> list[str]:
    """The mitigation variants among reconstructor names ('unet+eodd'), in the order given."""
    return [name for name in dict.fromkeys(names) if split_variant(name) is not None]


def base_of(name: str) -> str:
    """The plain-trained reconstructor a variant starts from ('unet' for 'unet+eodd'); a base is its own."""
    parts = split_variant(name)
    return name if parts is None else parts[0]


def strategy_text(name: str) -> str:
    """'equalized-odds loss' for 'unet+eodd'; 'plain training' for a reconstructor that is no variant."""
    parts = split_variant(name)
    return "plain training" if parts is None else STRATEGIES.get(parts[1], parts[1])


def _judged_as(metric: str) -> str:
    """How a change of `metric` (a stored name without '_change') is read: 'signed' (a group difference: narrower
    toward 0), 'gap' (a folded gap or the skewed error ratio: narrower when it falls), 'ratio' (min / max: narrower
    when it rises), or 'better up' / 'better down' (quality and task, by the catalogue's direction)."""
    if metric.endswith("_diff"):
        return "signed"
    if metric.endswith("_gap") or metric in ("eodd", "dice_skewed_error_ratio"):
        return "gap"
    if metric.endswith("_ratio"):
        return "ratio"
    return "better up" if catalogue.source(metric).higher_is_better else "better down"


def verdict(metric: str, estimate: float, low: float, high: float, q_value: float = np.nan,
            base_value: float = np.nan) -> str:
    """A mitigation change (variant − base of `metric`, without '_change') in words.

    'no significant change' when the interval covers 0 or the q-value (where there is one) is ≥ ALPHA.
    Otherwise, for a folded gap (max − min, ≥ 0): 'gap narrowed' when it fell, 'gap widened' when it rose
    (min / max ratios the other way). For a signed difference the change of the difference is not the
    change of its size: with `base_value` = the base's difference D on its reconstructed images and the
    change Δ, the variant's difference is D + Δ, so the gap |D + Δ| narrowed when Δ's whole interval points
    toward 0 and stays within 2|D| of it ('difference reversed sign' when the estimate passes −D), and
    widened when the whole interval points away from 0 or lies beyond −2D (or D = 0); an interval that
    straddles −2D says the difference changed without establishing which way the gap went. Without D the
    direction of the gap is unknown and said so. Quality and task metrics: 'gain' or 'cost' by the
    catalogue's direction.
    """
    if estimate is None or not np.isfinite(estimate) or not (np.isfinite(low) and np.isfinite(high)):
        return "no estimate"
    if low <= 0 <= high or (q_value == q_value and q_value >= ALPHA):
        return NO_CHANGE
    kind = _judged_as(metric)
    if kind in ("better up", "better down"):
        return "gain" if (estimate > 0) == (kind == "better up") else "cost"
    if kind != "signed":
        return "gap narrowed" if (estimate < 0) == (kind == "gap") else "gap widened"
    if base_value is None or not np.isfinite(base_value):
        return "difference changed (the base's difference is unknown)"
    size = abs(base_value)
    if base_value == 0:
        return "gap widened"
    sign = 1.0 if base_value > 0 else -1.0  # in units where the base's difference is positive
    lo, hi = sorted((low * sign, high * sign))
    reversed_text = " (difference reversed sign)" if estimate * sign < -size else ""
    if lo > 0 or hi < -2 * size:  # the whole interval away from 0 or past −D by more than |D|: a wider gap
        return "gap widened" + reversed_text
    if -2 * size < lo and hi < 0:  # the whole interval toward 0, none of it past −D by more than |D|
        return "gap narrowed" + reversed_text
    return "difference changed (narrower or wider not established)"


EFFECT_COLUMNS = ["variant", "base", "strategy", "level", "metric", "statistic", "label", "finding", "attribute",
                  "groups", "estimate", "ci_low", "ci_high", "n", "p_value", "family", "q_value", "base_value",
                  "verdict"]


def judge_effects(effects: pd.DataFrame, agg: pd.DataFrame) -> pd.DataFrame:
    """Stored mitigation changes (`queries.mitigation_effects`) with human names and a verdict per row.

    `agg` holds the run's aggregates; a signed difference's verdict needs the base's own difference at
    the same level, finding and contrast (`base_value`; NaN for other rows). Columns: `EFFECT_COLUMNS`
    ('metric' keeps the stored name without '_change', for exports).
    """
    if effects.empty:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    metric = effects.metric.astype(str).str.removesuffix("_change")
    keys = ["reconstructor", "level", "metric", "label", "attribute", "grp"]
    base_rows = agg[agg.metric.isin(set(metric[metric.str.endswith("_diff")]))][[*keys, "estimate"]].rename(
        columns={"reconstructor": "base", "estimate": "base_value"})
    rows = effects.assign(metric=metric.to_numpy()).merge(base_rows, how="left",
                                                          on=["base", "level", "metric", "label", "attribute", "grp"])
    return pd.DataFrame({
        "variant": rows.reconstructor, "base": rows.base, "strategy": rows.reconstructor.map(strategy_text),
        "level": rows.level.astype(float), "metric": rows.metric,
        "statistic": [f"{catalogue.label(m)} change" for m in rows.metric],
        "label": rows.label, "finding": ["mean over findings" if lb == "mean" else lb or "—" for lb in rows.label],
        "attribute": rows.attribute,
        "groups": [g if g not in ("", "all") else "everyone" if a == "all" else
                   "across groups" if m.endswith("_ratio") else "max − min"
                   for g, a, m in zip(rows.grp, rows.attribute, rows.metric, strict=True)],
        "estimate": rows.estimate, "ci_low": rows.ci_low, "ci_high": rows.ci_high, "n": rows.n,
        "p_value": rows.p_value, "family": rows.family, "q_value": rows.q_value, "base_value": rows.base_value,
        "verdict": [verdict(m, e, lo, hi, q, b) for m, e, lo, hi, q, b in
                    zip(rows.metric, rows.estimate, rows.ci_low, rows.ci_high, rows.q_value, rows.base_value,
                        strict=True)]})


def mitigation_effects(store: Store, key: str) -> pd.DataFrame:
    """Every stored change of a run's variants against their bases, judged (`judge_effects`), in the run's order:
    variant, level (mildest first), then the tested families first, findings with the mean last."""
    run = run_view(store, key)
    stored = queries.mitigation_effects(store, key)
    signed = sorted({m.removesuffix("_change") for m in stored.metric if m.removesuffix("_change").endswith("_diff")})
    table = judge_effects(stored, queries.aggregates(store, key, signed) if signed else pd.DataFrame(
        columns=queries.AGGREGATE_COLUMNS))
    order = {name: i for i, name in enumerate(run.reconstructors)}
    levels = {lv: i for i, lv in enumerate(run.mildest_first(table.level.unique()))}
    ranked = table.assign(_v=table.variant.map(lambda v: order.get(v, len(order))), _lv=table.level.map(levels),
                          _s=[_statistic_rank(m, primary_change(run)) for m in table.metric],
                          _l=[(lb == "mean", lb) for lb in table.label])
    return ranked.sort_values(["_v", "variant", "_lv", "_s", "statistic", "attribute", "_l", "groups"],
                              kind="stable").drop(columns=["_v", "_lv", "_s", "_l"]).reset_index(drop=True)


def primary_change(run: RunView) -> str:
    """The statistic whose change by a variant is the headline mitigation test: the run's primary signed
    difference ('tpr_diff' on X-ray, 'dice_diff' on MRI)."""
    return run.primary_test.removesuffix("_added")


def _statistic_rank(metric: str, primary: str) -> int:
    """Where a change shows in the mitigation table: the headline difference, other signed differences, folded
    gaps, the task, then image quality."""
    kind = _judged_as(metric)
    if metric == primary:
        return 0
    if kind in ("signed", "gap", "ratio"):
        return {"signed": 1, "gap": 2, "ratio": 2}[kind]
    return 4 if catalogue.source(metric).kind == "quality" else 3


def headline_effects(effects: pd.DataFrame, run: RunView, attribute: str, everything: bool = False) -> pd.DataFrame:
    """The changes a reader starts with, for everyone and the groups of `attribute`: the run's headline statistics
    (its modality's 'added' metrics and gaps, and image quality) as label means, everyone's for a metric of no
    group, plus each finding's change of the primary difference (`primary_change`). With `everything`, every
    stored statistic, finding and group of `attribute`."""
    rows = effects[effects.attribute.isin(["all", attribute])]
    if everything:
        return rows
    wanted = {m.removesuffix("_added") for m in run.added_metrics} | {g.metric for g in run.gap_metrics}
    headline = rows.metric.isin(wanted) | rows.metric.isin(catalogue.QUALITY)
    between = rows.metric.map(lambda m: _judged_as(m) in ("signed", "gap", "ratio"))
    whole = rows.label.isin(["mean", ""]) & ((rows.attribute == "all") | between)
    return rows[(headline & whole) | (rows.metric == primary_change(run))]


def effects_table(effects: pd.DataFrame) -> pd.DataFrame:
    """Judged changes as shown on the page and in the report: 'change [CI]', the test in words and the verdict."""
    return pd.DataFrame({
        "variant": effects.variant.to_numpy(), "level": [f"{lv:g}" for lv in effects.level],
        "statistic": effects.statistic.to_numpy(), "finding": effects.finding.to_numpy(),
        "groups": effects.groups.to_numpy(),
        "change vs base [95 % CI]": [_change_text(e, lo, hi)
                             for e, lo, hi in zip(effects.estimate, effects.ci_low, effects.ci_high, strict=True)],
        "verdict": effects.verdict.to_numpy(),
        "test": ["—" if e != e else test_text(p, q, f) or "descriptive: no test" for e, p, q, f in
                 zip(effects.estimate, effects.p_value, effects.q_value, effects.family, strict=True)],
        "strategy": effects.strategy.to_numpy(), "base": effects.base.to_numpy()})


def _change_text(estimate: float, low: float, high: float) -> str:
    """A change as 'estimate [CI]', signed; a change far below 0.001 (SSIM's, say) to three significant digits,
    so it never reads '+0.000 [+0.000, +0.000]' beside a verdict of gain or cost."""
    bounds = np.abs([estimate, low, high])
    if not np.isfinite(bounds).all() or bounds.max() >= 0.01 or bounds.max() == 0:
        return interval_text(estimate, low, high, signed=True)
    return f"{estimate:+.3g} [{low:+.3g}, {high:+.3g}]"


FRONTIER_COLUMNS = ["reconstructor", "base", "strategy", "level", "gap", "gap_low", "gap_high", "task", "task_low",
                    "task_high", "pareto"]


def pareto(frame: pd.DataFrame) -> pd.Series:
    """Per level, the points no other point beats: none with a gap as small and a task as high, one of them
    strictly. A point without both estimates is never optimal, and beats none."""
    known = frame.gap.notna() & frame.task.notna()
    optimal = pd.Series(False, index=frame.index)
    for _, cell in frame[known].groupby("level"):
        gap, task = cell.gap.to_numpy(), cell.task.to_numpy()
        beaten = [((gap <= g) & (task >= t) & ((gap < g) | (task > t))).any() for g, t in zip(gap, task, strict=True)]
        optimal[cell.index] = ~np.array(beaten)
    return optimal


FRONTIER_NOTE = ("Circles: plain training (each variant's base); diamonds: the variants, each joined to its base. "
                 "Error bars: bootstrap intervals at the run's level (evaluation.ci_level). A ringed point is "
                 "Pareto-optimal at its level: no other point there has a gap as small and a task as high. The rings "
                 "compare point estimates; overlapping intervals say the order may not hold.")
"""How to read the Pareto picture (page and report)."""


def frontier_of(frontier: pd.DataFrame, shown: Sequence[str], levels: Sequence[float]) -> pd.DataFrame:
    """`mitigation_frontier` rows of the variants `shown` and their bases at `levels`, Pareto flags recomputed among
    the points that remain (an optimum is judged against what is drawn)."""
    keep = frontier[frontier.reconstructor.isin({*shown, *map(base_of, shown)}) & frontier.level.isin(levels)]
    keep = keep.reset_index(drop=True)
    return keep.assign(pareto=pareto(keep))


def frontier_axes(run: RunView, gap: str = "", task: str = "") -> tuple[Headline, Headline]:
    """The fairness gap and task of a run's frontier: the named ones among its modality's headline gaps and tasks,
    else the first of each (X-ray: the equal-opportunity gap and mean AUROC; MRI: the Dice gap and Dice)."""
    return (next((h for h in run.gap_metrics if h.metric == gap), run.gap_metrics[0]),
            next((h for h in run.tasks if h.metric == task), run.tasks[0]))


def mitigation_frontier(store: Store, key: str, attribute: str, gap: str = "", task: str = "") -> pd.DataFrame:
    """Per variant and its base (plain training) and level: the fairness gap by `attribute` and the task for
    everyone, each with its interval, and whether the point is Pareto-optimal at its level (`pareto`).

    The gap and task are `frontier_axes(run, gap, task)`; columns `FRONTIER_COLUMNS`, the run's order.
    """
    run = run_view(store, key)
    gap_h, task_h = frontier_axes(run, gap, task)
    agg = queries.aggregates(store, key, sorted({gap_h.metric, task_h.metric}))
    mitigated = variants([*run.reconstructors, *sorted(set(agg.reconstructor))])
    bases = [base_of(v) for v in mitigated]
    shown = [r for r in dict.fromkeys([*run.reconstructors, *bases, *mitigated]) if r in {*bases, *mitigated}]
    keys = ["reconstructor", "level"]
    gaps = by_group(agg, gap_h.metric, gap_h.label, attribute)
    gaps = gaps[gaps.grp.isin(["", "all"])][[*keys, "estimate", "ci_low", "ci_high"]].rename(
        columns={"estimate": "gap", "ci_low": "gap_low", "ci_high": "gap_high"})
    tasks = overall(agg, task_h.metric, task_h.label)[[*keys, "estimate", "ci_low", "ci_high"]].rename(
        columns={"estimate": "task", "ci_low": "task_low", "ci_high": "task_high"})
    frame = gaps.merge(tasks, on=keys, how="outer")
    frame = frame[frame.reconstructor.isin(shown)]
    if frame.empty:
        return pd.DataFrame(columns=FRONTIER_COLUMNS)
    order = {name: i for i, name in enumerate(shown)}
    levels = {lv: i for i, lv in enumerate(run.mildest_first(frame.level.unique()))}
    frame = frame.assign(base=frame.reconstructor.map(base_of),
                         strategy=frame.reconstructor.map(strategy_text),
                         _r=frame.reconstructor.map(order), _lv=frame.level.map(levels)).sort_values(["_lv", "_r"])
    frame = frame.reset_index(drop=True)
    return frame.assign(pareto=pareto(frame))[FRONTIER_COLUMNS]


def frontier_table(frontier: pd.DataFrame, gap: Headline, task: Headline) -> pd.DataFrame:
    """Frontier points as shown: reconstructor, strategy, level, the gap and task as 'estimate [CI]', Pareto mark."""
    return pd.DataFrame({
        "reconstructor": frontier.reconstructor.to_numpy(), "strategy": frontier.strategy.to_numpy(),
        "level": [f"{lv:g}" for lv in frontier.level],
        f"{gap.title} [95 % CI]": [interval_text(e, lo, hi) for e, lo, hi in
                                   zip(frontier.gap, frontier.gap_low, frontier.gap_high, strict=True)],
        f"{task.axis} [95 % CI]": [interval_text(e, lo, hi) for e, lo, hi in
                                   zip(frontier.task, frontier.task_low, frontier.task_high, strict=True)],
        "Pareto-optimal at its level": ["✓" if p else "" for p in frontier.pareto]})
