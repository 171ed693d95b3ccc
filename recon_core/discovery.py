"""Weak-subgroup discovery: where reconstruction widens a group difference, ranked by how much it plausibly does.

A candidate is one signed change of a group difference (`<m>_diff_added`: reconstructed − clean,
paired) for one attribute or intersection × contrast × finding × reconstructor × level, read from the
stored aggregates as they are (nothing is recomputed). A candidate enters the ranking only when each
side of its contrast meets the size rules (units, and the positives / negatives its rate needs), when
it widens the difference (|reconstructed difference| > |clean difference|) and when its road is a
reconstruction: a road that returns the degraded image (`RunView.returns_degraded`, e.g. `none`) is a
reference, counted apart, and narrowings are counted apart too. The ranking statistic is the plausible
increase: the bound nearest 0 of the change's stored interval (the run's ci_level; simultaneous over an
attribute's k contrasts where k > 1) when that interval excludes 0 and the change points away from 0,
else 0 (ties: the smaller q first). The top of such a list is overstated (the largest of many is picked
partly for its noise): `selection_effect` says so in words, with the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recon_core.config import EvaluationConfig
from recon_core.exports import DEFAULT_CI_LEVEL
from recon_core.fairness.multiple_testing import BY_NAME as FAMILIES
from recon_core.fairness.summary import MINUS, Minimums
from recon_core.metrics import catalogue
from recon_core.results import collapsed_cells, interval_text, test_text
from recon_core.store import CLEAN
from recon_core.tables import attribute_text

SUFFIX = "_diff_added"
STATISTIC = "plausible increase"
"""The ranking statistic's column on the page: the widening change's interval bound nearest 0 when the interval
excludes 0, else 0."""
INTERVAL = "change [interval]"
"""The table's column of the change with its stored interval (its level is said in the column's help)."""
EXPORTED = ["rank", "reconstructor", "level", "attribute", "grp", "metric", "label", "statistic", "estimate", "ci_low",
            "ci_high", "p_value", "q_value", "family", "first", "other", "n_first", "n_other", "pos_first",
            "pos_other", "clean_diff", "recon_diff", "direction", "collapsed"]
"""The stored ids the ranking's CSV carries (the page's table shows them by human names)."""
NEEDS: Mapping[str, tuple[bool, bool]] = {"tpr": (True, False), "fpr": (False, True), "auroc": (True, True),
                                          "ppv": (True, True), "eodd": (True, True)}
"""(needs positives, needs negatives) per compared statistic; the others (selection rate, Dice, HD95): units only."""
NO_ESTIMATE = "no estimate stored (a group below the run's minima when the statistics were computed)"
NO_SIZES = "the groups' sizes are not stored"


def interval_words(level: float) -> str:
    """What the stored interval of a change is: the run's level, simultaneous over an attribute's contrasts
    ('group − rest' contrasts are Bonferroni-adjusted over the attribute's k contrasts when they are stored)."""
    return (f"the stored interval (the run's ci_level, {level * 100:g} %; simultaneous over an attribute's k "
            "contrasts where k > 1)")


def ranking_rule(level: float) -> str:
    """The ranking's rule in one sentence: only widenings, by their plausible increase."""
    return (f"Only changes that widen the difference (|reconstructed difference| > |clean difference|) are ranked, "
            f"by their **{STATISTIC}**: the bound nearest 0 of {interval_words(level)} when it excludes 0 and the "
            "change points away from 0, else 0 (ties: the smaller q first); narrowings, and roads that return the "
            "degraded image, are counted apart.")


def column_help(level: float) -> dict[str, str]:
    """One line of help for each column the discovery table adds to `recon_core.tables.HELP`."""
    return {
        "rank": f"Position in the ranking by the {STATISTIC} (ties: the smaller q first).",
        "subgroups by": "The attribute or intersection whose groups are compared.",
        STATISTIC: f"How much the reconstruction widens the difference at least, plausibly: the bound nearest 0 of "
                   f"{interval_words(level)} when it excludes 0, else 0. The ranking statistic.",
        INTERVAL: f"Reconstructed − clean difference, paired, with {interval_words(level)}.",
        "difference: clean → reconstructed": "The group difference on the clean images and on the reconstruction; "
                                             "'widens' when the reconstruction's is further from 0.",
        "units per group": "Units (images, or patients on MRI) on each side of the contrast.",
        "positives per group": "Cases with the finding on each side (a rate needs the run's minimum on each side).",
    }


@dataclass(frozen=True)
class Discovery:
    """The scanned candidates, best first, each with why it was left out ('' when ranked), and the families' sizes."""

    candidates: pd.DataFrame
    """Every scanned stored row: the aggregates' columns plus sides, sizes, `statistic` and `reason`."""
    minimums: Minimums
    family_sizes: dict[str, int]
    """Tests per family over the whole run: the scope of each q-value."""
    level: float = DEFAULT_CI_LEVEL
    """The run's ci_level: the level of every stored interval."""

    @property
    def scanned(self) -> int:
        """How many candidates were scanned (before the size rules)."""
        return len(self.candidates)

    @property
    def ranked(self) -> pd.DataFrame:
        """The reconstructions' widenings that met the size rules, best first, with their `rank` (1 = the top)."""
        c = self.candidates
        kept = c[(c.reason == "") & ~c.reference & (c.direction == "widens")].reset_index(drop=True)
        return kept.assign(rank=np.arange(1, len(kept) + 1))

    @property
    def apart(self) -> pd.DataFrame:
        """The candidates that met the size rules but are not ranked: narrowings (or no change of |difference|),
        and every change on a road that returns the degraded image."""
        c = self.candidates
        return c[(c.reason == "") & (c.reference | (c.direction != "widens"))].reset_index(drop=True)

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


def excludes_zero(low: pd.Series, high: pd.Series) -> np.ndarray:
    """Whether each interval excludes 0 with a spread (a zero-width interval, resamples without spread, does not:
    it says nothing about how plausible the change is)."""
    lo, hi = low.to_numpy(float), high.to_numpy(float)
    with np.errstate(invalid="ignore"):
        return ((lo > 0) | (hi < 0)) & (hi > lo)


def directions(clean: pd.Series, recon: pd.Series) -> np.ndarray:
    """'widens' (|reconstructed difference| > |clean difference|), 'narrows' (<), 'unchanged' (=), '' (a difference
    not stored)."""
    c, r = clean.to_numpy(float), recon.to_numpy(float)
    with np.errstate(invalid="ignore"):
        return np.select([np.isnan(c) | np.isnan(r), np.abs(r) > np.abs(c), np.abs(r) < np.abs(c)],
                         ["", "widens", "narrows"], default="unchanged").astype(object)


def plausible_increase(low: pd.Series, high: pd.Series, direction: np.ndarray) -> np.ndarray:
    """How much the change widens the difference at least, plausibly: the interval's bound nearest 0 when the change
    widens and its interval excludes 0, else 0. A widening's change points away from 0 by itself (|r| > |c| gives
    r − c the sign of r), so an interval that excludes 0 lies on that side."""
    lo, hi = low.to_numpy(float), high.to_numpy(float)
    keep = excludes_zero(low, high) & (direction == "widens")
    return np.where(keep, np.minimum(np.abs(lo), np.abs(hi)), 0.0)


def discover(agg: pd.DataFrame, minimums: Minimums, level: float = DEFAULT_CI_LEVEL,
             reference: Iterable[str] = ()) -> Discovery:
    """Every stored `<m>_diff_added` contrast on a reconstruction, judged by the size rules, its direction and its
    road (`reference`: the roads that return the degraded image), ordered by `plausible_increase` (descending), ties
    by q (ascending, untested last), then |estimate| (descending). `level`: the run's ci_level."""
    tested = agg[agg.family.notna() & agg.p_value.notna()] if "family" in agg else agg.iloc[:0]
    family_sizes = {name: int((tested.family == name).sum()) for name in FAMILIES if (tested.family == name).any()}
    cand = agg[agg.metric.str.endswith(SUFFIX) & (agg.reconstructor != CLEAN) & (agg.attribute != "all")
               & agg.grp.str.contains(MINUS, regex=False)].reset_index(drop=True)
    base = cand.metric.str.removesuffix(SUFFIX)
    cand = pd.concat([cand, _sides(cand.grp)], axis=1).assign(
        base=base, source=[catalogue.source(b).name for b in base], diff_metric=cand.metric.str.removesuffix("_added"))
    cand = _with_differences(_with_sizes(cand, agg), agg)
    direction = directions(cand.clean_diff, cand.recon_diff)
    cand = cand.assign(collapsed=_collapsed(cand, agg), reason=_reasons(cand, minimums), direction=direction,
                       reference=cand.reconstructor.isin(list(reference)),
                       statistic=plausible_increase(cand.ci_low, cand.ci_high, direction))
    order = cand.assign(_q=cand.q_value.fillna(np.inf), _size=-cand.estimate.abs()).sort_values(
        ["statistic", "_q", "_size", "reconstructor", "level", "metric", "label", "attribute", "grp"],
        ascending=[False, *[True] * 8], kind="mergesort", na_position="last")
    return Discovery(order.drop(columns=["_q", "_size"]).reset_index(drop=True), minimums, family_sizes, level)


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
    return Discovery(c[keep].reset_index(drop=True), found.minimums, found.family_sizes, found.level)


def _moved(clean: float, recon: float, direction: str) -> str:
    """' (widens)', ' (widens; sign reversed)', …: how the reconstruction moved the group difference."""
    if not direction:
        return ""
    return f" ({direction}{'; sign reversed' if clean * recon < 0 else ''})"


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
        INTERVAL: [interval_text(e, lo, hi, signed=True)
                             for e, lo, hi in zip(r.estimate, r.ci_low, r.ci_high, strict=True)],
        "reconstructor": r.reconstructor.to_numpy(),
        "level": [f"{v:g}" for v in r.level],
        "subgroups by": [attribute_text(a) for a in r.attribute],
        "groups": r.grp.to_numpy(),
        "statistic": [catalogue.label(m) for m in r.metric],
        "finding": ["mean over findings" if lb == "mean" else lb or "—" for lb in r.label],
        "difference: clean → reconstructed": [
            f"{interval_text(c, np.nan, np.nan, signed=True)} → {interval_text(d, np.nan, np.nan, signed=True)}"
            + _moved(c, d, w) for c, d, w in zip(r.clean_diff.astype(float), r.recon_diff.astype(float), r.direction,
                                                 strict=True)],
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


def _count(n: int, one: str, many: str) -> str:
    """'1 change' / '3 changes': a count with its noun in the right number."""
    return f"{n} {one if n == 1 else many}"


def apart_text(found: Discovery) -> list[str]:
    """What met the size rules but is not ranked, counted: the narrowings (and changes that leave |difference| as
    it was), and each road that returns the degraded image, named as such ('none (the degraded image)')."""
    apart = found.apart
    lines = []
    recon = apart[~apart.reference]
    narrows = recon[recon.direction == "narrows"]
    if len(recon):
        plausible = int(excludes_zero(narrows.ci_low, narrows.ci_high).sum())
        other = len(recon) - len(narrows)
        lines.append(f"Not ranked: {_count(len(narrows), 'narrowing', 'narrowings')} (the reconstruction's "
                     f"difference nearer 0 than the clean images'), {plausible} of them with an interval that excludes "
                     "0" + (f"; and {_count(other, 'change that leaves', 'changes that leave')} |difference| as it "
                            "was (or without a stored difference)" if other else "")
                     + ". Reconstruction does not add a gap there.")
    for road, part in apart[apart.reference].groupby("reconstructor", sort=True):
        widens = part[part.direction == "widens"]
        lines.append(f"Reference, not ranked: {road} (the degraded image) — "
                     f"{_count(len(part), 'change', 'changes')}, {_count(len(widens), 'widening', 'widenings')}, "
                     f"{int((widens.statistic > 0).sum())} of them plausibly (largest {STATISTIC}: "
                     f"{widens.statistic.max() if len(widens) else 0.0:.3f}). It shows what the degradation alone does "
                     "to a difference; it is no reconstructor.")
    return lines


def selection_effect(found: Discovery, unit: str = "") -> list[str]:
    """The selection effect in words with the numbers: what was scanned, why the top estimate is overstated, and
    what the correction covers and what it does not (`unit`: the level's unit, e.g. 'photons/pixel')."""
    ranked = found.ranked
    if ranked.empty:
        scanned = _count(found.scanned, "added group difference was", "added group differences were")
        return [f"No candidate to rank: {scanned} scanned and none widened a "
                "difference on a reconstruction and met the size rules (an attribute with one group, or groups too "
                "small, has no contrast to rank)."
                if found.scanned else
                "No candidate to rank: this selection holds no added group difference (an attribute needs two "
                "groups to be contrasted, and the reconstructed cells must have landed)."]
    top = ranked.iloc[0]
    finding = {"": "", "mean": ", mean over findings"}.get(top.label, f", {top.label}")
    where = (f"{catalogue.label(top.metric)} for {top.grp} ({attribute_text(top.attribute)}{finding}) "
             f"with {top.reconstructor} at {top.level:g}{' ' + unit if unit else ''}")
    plausible = ranked[ranked.statistic > 0]
    significant = int((plausible.q_value < 0.05).sum())
    first = (f"{found.scanned} candidate changes were scanned (attribute or intersection × contrast × finding × "
             f"statistic × reconstructor × level); {_count(len(ranked), 'widening', 'widenings')} on a "
             f"reconstruction met the size rules, and {len(plausible)} of them "
             f"{'has' if len(plausible) == 1 else 'have'} {interval_words(found.level)} that excludes 0; of those, "
             f"{significant} {'has' if significant == 1 else 'have'} q < 0.05 in their family. The top one, {where}, "
             f"changed by {interval_text(top.estimate, top.ci_low, top.ci_high, signed=True)}. It was picked as the "
             f"first of {len(ranked)} by its {STATISTIC}, and the first of many noisy estimates is partly there by "
             "chance: its size is overstated (biased away from 0; the winner's curse), and its interval, built for "
             "one test chosen in advance, is too optimistic once it has been picked. Expect a smaller change on new "
             "data, and confirm it there before acting on it.")
    counts = ", ".join(f"{name}: {n} tests" for name, n in found.family_sizes.items()
                       if name in ("primary", "secondary"))
    outside = int(ranked.family.isna().sum())
    second = ("The q-values are Benjamini–Hochberg within each family fixed before any result was seen"
              + (f" ({counts}, over the whole run, not only this selection)" if counts else "")
              + ": among the changes with q < 0.05, about 5 % or fewer are expected to be false discoveries. The "
              "correction does not remove the overstatement of the top estimate, nor does it cover this ranking "
              "itself or a narrower selection made after looking"
              + (f"; {_count(outside, 'ranked candidate belongs', 'ranked candidates belong')} to no family "
                 "(nothing varied in the resamples, so no test could reject) and "
                 f"{'is' if outside == 1 else 'are'} descriptive only" if outside else "")
              + "." + "".join(f" The {n} family asks: {FAMILIES[n].question}" for n in ("primary", "secondary")
                              if n in found.family_sizes))
    return [first, second]


STAR = 0.05
"""The q below which a heat-map cell carries a ★."""


@dataclass(frozen=True)
class Stars:
    """Where one heat map's ★ stand in their family: the map's own and the family's, as stored."""

    family: str
    on_map: int
    in_family: int
    tests: int

    @property
    def elsewhere(self) -> bool:
        """Whether some of the family's ★ lie on other maps (then Weak subgroups ranks where they are)."""
        return self.in_family > self.on_map

    def text(self) -> str:
        """'★ on this map: 1 cell. In the whole primary family 3 of 40 tests have q < 0.05: …'."""
        return (f"★ on this map: {_count(self.on_map, 'cell', 'cells')}. In the whole {self.family} family "
                f"{self.in_family} of {_count(self.tests, 'test', 'tests')} "
                f"{'has' if self.in_family == 1 else 'have'} q < {STAR:g}"
                + (": Weak subgroups ranks where they are." if self.elsewhere else "."))


def stars(agg: pd.DataFrame, shown: pd.DataFrame) -> Stars | None:
    """The ★ count of a heat map's rows (`shown`) and of their family over the run (None: the map is untested)."""
    family = shown.family.dropna()
    if family.empty:
        return None
    tested = agg[(agg.family == family.iloc[0]) & agg.p_value.notna()]
    return Stars(str(family.iloc[0]), int((shown.q_value < STAR).sum()), int((tested.q_value < STAR).sum()),
                 len(tested))
