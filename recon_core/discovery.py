"""Weak-subgroup discovery: every stored added group difference, ranked by how large it plausibly is.

A candidate is one signed change of a group difference (`<m>_diff_added`: reconstructed − clean,
paired) for one attribute or intersection × contrast × finding × reconstructor × level, read from the
stored aggregates as they are (nothing is recomputed). A candidate enters the ranking only when each
side of its contrast meets the size rules (units, and the positives / negatives its rate needs); the
rest are counted by the reason they were left out. The ranking statistic is the smallest plausible
size of the change: the 95 % interval's bound nearest 0 when the interval excludes 0, else 0 (ties:
the smaller q first). The top of such a list is biased upward (the worst of many is picked partly for
its noise): `selection_effect` says so in words, with the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recon_core.config import EvaluationConfig
from recon_core.fairness.multiple_testing import BY_NAME as FAMILIES
from recon_core.fairness.summary import MINUS, Minimums
from recon_core.metrics import catalogue
from recon_core.results import collapsed_cells, interval_text, test_text
from recon_core.store import CLEAN

SUFFIX = "_diff_added"
STATISTIC = "smallest plausible change"
"""The ranking statistic's column on the page: |change|'s interval bound nearest 0 when it excludes 0, else 0."""
NEEDS: Mapping[str, tuple[bool, bool]] = {"tpr": (True, False), "fpr": (False, True), "auroc": (True, True),
                                          "ppv": (True, True), "eodd": (True, True)}
"""(needs positives, needs negatives) per compared statistic; the others (selection rate, Dice, HD95): units only."""
NO_ESTIMATE = "no estimate stored (a group below the run's minima when the statistics were computed)"
NO_SIZES = "the groups' sizes are not stored"
COLUMN_HELP = {
    "rank": "Position in the ranking by the smallest plausible change (ties: the smaller q first).",
    "subgroups by": "The attribute or intersection whose groups are compared.",
    STATISTIC: "How large the change is at least, plausibly: the 95 % interval's bound nearest 0 when the "
               "interval excludes 0, else 0. The ranking statistic.",
    "difference: clean → reconstructed": "The group difference on the clean images and on the reconstruction; "
                                         "'widens' when the reconstruction's is further from 0.",
    "units per group": "Units (images, or patients on MRI) on each side of the contrast.",
    "positives per group": "Cases with the finding on each side (a rate needs the run's minimum on each side).",
}
"""One line of help for each column the discovery table adds to `recon_core.tables.HELP`."""


@dataclass(frozen=True)
class Discovery:
    """The scanned candidates, best first, each with why it was left out ('' when ranked), and the families' sizes."""

    candidates: pd.DataFrame
    """Every scanned stored row: the aggregates' columns plus sides, sizes, `statistic` and `reason`."""
    minimums: Minimums
    family_sizes: dict[str, int]
    """Tests per family over the whole run: the scope of each q-value."""

    @property
    def scanned(self) -> int:
        """How many candidates were scanned (before the size rules)."""
        return len(self.candidates)

    @property
    def ranked(self) -> pd.DataFrame:
        """The candidates that met the size rules, best first, with their `rank` (1 = the top)."""
        kept = self.candidates[self.candidates.reason == ""].reset_index(drop=True)
        return kept.assign(rank=np.arange(1, len(kept) + 1))

    @property
    def left_out(self) -> pd.DataFrame:
        """reason, candidates: how many were left out by the size rules, per reason."""
        counts = self.candidates.reason[self.candidates.reason != ""].value_counts()
        return pd.DataFrame({"reason": counts.index.astype(str), "candidates": counts.to_numpy(int)})


def run_minimums(config: Mapping | None) -> Minimums:
    """The run's minimum group rules from its stored config (`evaluation.min_group_size`, `min_positives`,
    `min_negatives`; the defaults where the config leaves them out)."""
    evaluation = (config or {}).get("evaluation", {}) or {}
    default = EvaluationConfig()
    return Minimums(int(evaluation.get("min_group_size", default.min_group_size)),
                    int(evaluation.get("min_positives", default.min_positives)),
                    int(evaluation.get("min_negatives", default.min_negatives)))


def size_rules(minimums: Minimums) -> str:
    """The size rules in one sentence, with the minima."""
    return (f"A candidate is ranked only when each side of its contrast has at least {minimums.group_size} units "
            f"and, per finding, at least {minimums.positives} positives (sensitivity, AUROC, precision, average "
            f"odds) and {minimums.negatives} negatives (false-positive rate, AUROC, precision, average odds); the "
            "'rest' side of a 'group − rest' contrast counts the other groups pooled. A mean over findings averages "
            "only findings that met the minima in every group, so only its units are checked.")


def _sides(grp: pd.Series) -> pd.DataFrame:
    """'F − M' → first 'F', other 'M'; 'F & 60+ − rest' → other 'rest'."""
    parts = grp.str.split(MINUS, n=1, regex=False)
    return pd.DataFrame({"first": parts.str[0], "other": parts.str[1]}, index=grp.index)


def _with_sizes(cand: pd.DataFrame, agg: pd.DataFrame) -> pd.DataFrame:
    """Each candidate with the units and positives of both sides, read from the cell's per-group rows of the
    statistic it compares ('rest': the contrast's units less the first group's)."""
    keys = ["reconstructor", "level", "source", "label", "attribute"]
    groups = agg.loc[~agg.grp.str.contains(MINUS, regex=False) & (agg.attribute != "all"),
                     ["reconstructor", "level", "metric", "label", "attribute", "grp", "n", "n_pos"]
                     ].rename(columns={"metric": "source"}).drop_duplicates([*keys, "grp"])
    groups = groups.assign(n=groups.n.astype(float), n_pos=groups.n_pos.astype(float))  # stored NULL (NA): NaN
    cand = cand.assign(n=cand.n.astype(float), n_pos=cand.n_pos.astype(float))
    out = cand.merge(groups.rename(columns={"grp": "first", "n": "n_first", "n_pos": "pos_first"}),
                     on=[*keys, "first"], how="left")
    out = out.merge(groups.rename(columns={"grp": "other", "n": "n_other", "n_pos": "pos_other"}),
                    on=[*keys, "other"], how="left")
    rest = (out.other == "rest").to_numpy()
    out.loc[rest, "n_other"] = out.n[rest] - out.n_first[rest]
    out.loc[rest, "pos_other"] = out.n_pos[rest] - out.pos_first[rest]
    return out


def _with_differences(cand: pd.DataFrame, agg: pd.DataFrame) -> pd.DataFrame:
    """Each candidate with its stored group difference on the clean images and on the reconstruction."""
    diff = agg[agg.metric.str.endswith("_diff")][["reconstructor", "level", "metric", "label", "attribute", "grp",
                                                   "estimate"]].rename(columns={"metric": "diff_metric"})
    clean = diff[diff.reconstructor == CLEAN].drop(columns=["reconstructor", "level"]).rename(
        columns={"estimate": "clean_diff"})
    recon = diff[diff.reconstructor != CLEAN].rename(columns={"estimate": "recon_diff"})
    keys = ["diff_metric", "label", "attribute", "grp"]
    return (cand.merge(clean.drop_duplicates(keys), on=keys, how="left")
            .merge(recon.drop_duplicates(["reconstructor", "level", *keys]), on=["reconstructor", "level", *keys],
                   how="left"))


def _collapsed(cand: pd.DataFrame, agg: pd.DataFrame) -> pd.Series:
    """Per candidate, the rate behind it that sits at the same bound (0 or 1) in every group, on the reconstruction
    or on the clean images ('' where none does): there the change is a collapse of the decision
    (`results.collapsed_cells`)."""
    rates = agg[agg.metric.isin(catalogue.THRESHOLD_RATES) & ~agg.grp.isin(["all", ""])]
    notes = pd.Series("", index=cand.index, dtype=object)
    for (metric, label, attribute), part in cand.groupby(["metric", "label", "attribute"], sort=False):
        recon = collapsed_cells(rates, str(metric), str(label), str(attribute))
        clean = "; ".join(f"{why} on clean images" for why in
                          collapsed_cells(rates, str(metric), str(label), str(attribute), clean=True).values())
        notes[part.index] = ["; ".join(filter(None, (recon.get((str(r), float(lv)), ""), clean)))
                             for r, lv in zip(part.reconstructor, part.level, strict=True)]
    return notes


def _reasons(cand: pd.DataFrame, minimums: Minimums) -> pd.Series:
    """Why each candidate is left out ('' where it passes): the first rule it breaks."""
    needs = [NEEDS.get(b, (False, False)) for b in cand.base]
    per_finding = (cand.label != "mean").to_numpy()
    pos = np.array([p for p, _ in needs], bool) & per_finding
    neg = np.array([n for _, n in needs], bool) & per_finding
    n1, n2 = cand.n_first.to_numpy(float), cand.n_other.to_numpy(float)
    p1, p2 = cand.pos_first.to_numpy(float), cand.pos_other.to_numpy(float)
    with np.errstate(invalid="ignore"):
        small = np.minimum(n1, n2) < minimums.group_size
        few_pos = pos & (np.minimum(p1, p2) < minimums.positives)
        few_neg = neg & (np.minimum(n1 - p1, n2 - p2) < minimums.negatives)
    missing = np.isnan(n1) | np.isnan(n2) | ((pos | neg) & (np.isnan(p1) | np.isnan(p2)))
    reasons = np.select(
        [cand.estimate.isna().to_numpy(), missing, small, few_pos, few_neg],
        [NO_ESTIMATE, NO_SIZES, f"a group with fewer than {minimums.group_size} units",
         f"a group with fewer than {minimums.positives} positives",
         f"a group with fewer than {minimums.negatives} negatives"], default="")
    return pd.Series(reasons, index=cand.index, dtype=object)


def smallest_plausible(estimate: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    """|change| at least, plausibly: the interval bound nearest 0 when the interval excludes 0, else 0."""
    lo, hi = low.to_numpy(float), high.to_numpy(float)
    with np.errstate(invalid="ignore"):
        excludes = (lo > 0) | (hi < 0)
    return np.where(excludes, np.minimum(np.abs(lo), np.abs(hi)), 0.0)


def discover(agg: pd.DataFrame, minimums: Minimums) -> Discovery:
    """Every stored `<m>_diff_added` contrast on a reconstruction, judged by the size rules and ordered by
    `smallest_plausible` (descending), ties by q (ascending, untested last), then |estimate| (descending)."""
    tested = agg[agg.family.notna() & agg.p_value.notna()] if "family" in agg else agg.iloc[:0]
    family_sizes = {name: int((tested.family == name).sum()) for name in FAMILIES if (tested.family == name).any()}
    cand = agg[agg.metric.str.endswith(SUFFIX) & (agg.reconstructor != CLEAN) & (agg.attribute != "all")
               & agg.grp.str.contains(MINUS, regex=False)].reset_index(drop=True)
    base = cand.metric.str.removesuffix(SUFFIX)
    cand = pd.concat([cand, _sides(cand.grp)], axis=1).assign(
        base=base, source=[catalogue.source(b).name for b in base], diff_metric=cand.metric.str.removesuffix("_added"))
    cand = _with_differences(_with_sizes(cand, agg), agg)
    cand = cand.assign(collapsed=_collapsed(cand, agg), reason=_reasons(cand, minimums),
                       statistic=smallest_plausible(cand.estimate, cand.ci_low, cand.ci_high))
    order = cand.assign(_q=cand.q_value.fillna(np.inf), _size=-cand.estimate.abs()).sort_values(
        ["statistic", "_q", "_size", "reconstructor", "level", "metric", "label", "attribute", "grp"],
        ascending=[False, *[True] * 8], kind="mergesort", na_position="last")
    return Discovery(order.drop(columns=["_q", "_size"]).reset_index(drop=True), minimums, family_sizes)


def select(found: Discovery, reconstructors: Iterable[str] | None = None, levels: Iterable[float] | None = None,
           attributes: Iterable[str] | None = None) -> Discovery:
    """Only the candidates of some reconstructors, levels and attributes (None: all), ranked among themselves."""
    keep = np.ones(found.scanned, bool)
    c = found.candidates
    if reconstructors is not None:
        keep &= c.reconstructor.isin(list(reconstructors)).to_numpy()
    if levels is not None:
        keep &= c.level.isin([float(v) for v in levels]).to_numpy()
    if attributes is not None:
        keep &= c.attribute.isin(list(attributes)).to_numpy()
    return Discovery(c[keep].reset_index(drop=True), found.minimums, found.family_sizes)


def attribute_text(attribute: str) -> str:
    """'sex×age_band' → 'Sex × age band'."""
    return " × ".join(part.replace("_", " ") for part in attribute.split("×")).capitalize()


def _direction(clean: float, recon: float) -> str:
    """'widens', 'narrows' or 'reverses': how the reconstruction moved the group difference, from the stored values."""
    if np.isnan(clean) or np.isnan(recon):
        return ""
    if clean * recon < 0:
        return "reverses"
    return "widens" if abs(recon) > abs(clean) else "narrows"


def _pair(first: str, other: str, a: float, b: float) -> str:
    """'F: 412 · M: 388' ('—' for a count that is not stored)."""
    def count(v: float) -> str:
        return "—" if v != v else f"{int(v)}"
    return f"{first}: {count(a)} · {other}: {count(b)}"


def table(found: Discovery) -> pd.DataFrame:
    """The ranked candidates as the page shows them: human names, the statistic, the change, the test and sizes."""
    r = found.ranked
    return pd.DataFrame({
        "rank": r["rank"].to_numpy(int),
        STATISTIC: np.round(r.statistic.to_numpy(float), 3),
        "change [95 % CI]": [interval_text(e, lo, hi, signed=True)
                             for e, lo, hi in zip(r.estimate, r.ci_low, r.ci_high, strict=True)],
        "reconstructor": r.reconstructor.to_numpy(),
        "level": [f"{v:g}" for v in r.level],
        "subgroups by": [attribute_text(a) for a in r.attribute],
        "groups": r.grp.to_numpy(),
        "statistic": [catalogue.label(m) for m in r.metric],
        "finding": ["mean over findings" if lb == "mean" else lb or "—" for lb in r.label],
        "difference: clean → reconstructed": [
            f"{interval_text(c, np.nan, np.nan, signed=True)} → {interval_text(d, np.nan, np.nan, signed=True)}"
            + (f" ({_direction(c, d)})" if _direction(c, d) else "")
            for c, d in zip(r.clean_diff.astype(float), r.recon_diff.astype(float), strict=True)],
        "test": [test_text(p, q, f) or "descriptive: no test"
                 for p, q, f in zip(r.p_value, r.q_value, r.family, strict=True)],
        "⚠ rate at a bound": r.collapsed.to_numpy(),
        "units per group": [_pair(a, b, x, y) for a, b, x, y in zip(r["first"], r.other, r.n_first, r.n_other,
                                                                    strict=True)],
        "positives per group": [_pair(a, b, x, y) if lb != "mean" and x == x else "—"
                                for a, b, x, y, lb in zip(r["first"], r.other, r.pos_first, r.pos_other, r.label,
                                                          strict=True)]})


def left_out_text(found: Discovery) -> str:
    """'Left out by the size rules: 12 candidates (8: a group with fewer than 5 positives; …)', or that none was."""
    total = int(found.left_out.candidates.sum())
    if not total:
        return f"No candidate was left out by the size rules (of {found.scanned} scanned)."
    parts = "; ".join(f"{c} — {r}" for r, c in zip(found.left_out.reason, found.left_out.candidates, strict=True))
    return f"Left out by the size rules: {total} of {found.scanned} candidates ({parts})."


def selection_effect(found: Discovery, unit: str = "") -> list[str]:
    """The selection effect in words with the numbers: what was scanned, why the top estimate is biased upward,
    and what the correction covers and what it does not (`unit`: the level's unit, e.g. 'photons/pixel')."""
    ranked = found.ranked
    if ranked.empty:
        return [f"No candidate to rank: {found.scanned} added group differences were scanned and none met the "
                "size rules (an attribute with one group, or groups too small, has no contrast to rank)."
                if found.scanned else
                "No candidate to rank: this selection holds no added group difference (an attribute needs two "
                "groups to be contrasted, and the reconstructed cells must have landed)."]
    top = ranked.iloc[0]
    finding = {"": "", "mean": ", mean over findings"}.get(top.label, f", {top.label}")
    where = (f"{catalogue.label(top.metric)} for {top.grp} ({attribute_text(top.attribute)}{finding}) "
             f"with {top.reconstructor} at {top.level:g}{' ' + unit if unit else ''}")
    plausible = int((ranked.statistic > 0).sum())
    first = (f"{found.scanned} candidate changes were scanned (attribute or intersection × contrast × finding × "
             f"statistic × reconstructor × level); {len(ranked)} met the size rules, and {plausible} of them have a "
             f"95 % interval that excludes 0. The top one, {where}, changed by "
             f"{interval_text(top.estimate, top.ci_low, top.ci_high, signed=True)}. It was picked because it was the "
             f"largest of {len(ranked)}, and the largest of many noisy estimates is partly large by chance: its "
             "estimate is biased upward (the winner's curse), and its interval, built for one test chosen in "
             "advance, is too optimistic once it has been picked. Expect a smaller change on new data, and confirm "
             "it there before acting on it.")
    counts = ", ".join(f"{name}: {n} tests" for name, n in found.family_sizes.items()
                       if name in ("primary", "secondary"))
    outside = int(ranked.family.isna().sum())
    second = ("The q-values are Benjamini–Hochberg within each family fixed before any result was seen"
              + (f" ({counts}, over the whole run, not only this selection)" if counts else "")
              + ": among the changes with q < 0.05, about 5 % or fewer are expected to be false discoveries. The "
              "correction does not remove the upward bias of the top estimate, nor does it cover this ranking "
              "itself or a narrower selection made after looking"
              + (f"; {outside} ranked candidate{'s' if outside != 1 else ''} belong to no family (nothing varied "
                 "in the resamples, so no test could reject) and are descriptive only" if outside else "")
              + "." + "".join(f" The {n} family asks: {FAMILIES[n].question}" for n in ("primary", "secondary")
                              if n in found.family_sizes))
    return [first, second]
