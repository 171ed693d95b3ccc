"""Weak-subgroup discovery: ranked from stored rows only, widenings on a reconstruction only, by its stated statistic,
with size rules, the narrowings and the degraded-image reference counted apart and the selection effect in words; on
hand-built aggregates (each rule on its own) and on the tiny X-ray and MRI stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recon_core import discovery, exports
from recon_core.fairness.summary import Minimums
from recon_core.results import run_view
from recon_core.store import CLEAN, queries
from recon_core.store.queries import AGGREGATE_COLUMNS
from recon_core.tables import NAMES, attribute_text

RULES = Minimums(group_size=10, positives=5, negatives=5)


def row(recon: str, level: float, metric: str, grp: str, estimate: float = np.nan, low: float = np.nan,
        high: float = np.nan, n: int = 0, n_pos: float | None = None, q: float = np.nan, family: str | None = None,
        label: str = "nodule", attribute: str = "sex") -> dict:
    """One stored aggregate row (the store's columns)."""
    return dict(config_hash="k", reconstructor=recon, level=level, metric=metric, label=label, attribute=attribute,
                grp=grp, estimate=estimate, ci_low=low, ci_high=high, n=n, n_pos=n_pos,
                p_value=np.nan if q != q else q / 2, q_value=q, family=family, dropped=0.0)


def cell(recon: str, level: float, change: tuple[float, float, float], q: float, sizes: tuple[int, int] = (50, 50),
         positives: tuple[int, int] = (20, 20), metric: str = "tpr", attribute: str = "sex",
         groups: tuple[str, str] = ("F", "M")) -> list[dict]:
    """A cell's per-group rows of `metric` and its stored signed change ('F − M'), with the clean difference."""
    a, b = groups
    contrast = f"{a} − {b}"
    est, low, high = change
    return [row(recon, level, metric, a, 0.8, n=sizes[0], n_pos=positives[0], attribute=attribute),
            row(recon, level, metric, b, 0.7, n=sizes[1], n_pos=positives[1], attribute=attribute),
            row(recon, level, f"{metric}_diff", contrast, 0.1 + est, n=sum(sizes), n_pos=sum(positives),
                attribute=attribute),
            row(CLEAN, 0.0, f"{metric}_diff", contrast, 0.1, n=sum(sizes), n_pos=sum(positives), attribute=attribute),
            row(recon, level, f"{metric}_diff_added", contrast, est, low, high, n=sum(sizes), n_pos=sum(positives),
                q=q, family="primary" if q == q else None, attribute=attribute)]


def frame(*cells: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([r for c in cells for r in c], columns=AGGREGATE_COLUMNS)


def test_candidates_are_ranked_by_the_plausible_increase_then_by_q():
    agg = frame(cell("wide", 100.0, (0.50, -0.10, 1.10), q=0.4),  # largest estimate, interval covers 0: 0
                cell("narrow", 100.0, (0.20, 0.10, 0.30), q=0.01),  # at least 0.10
                cell("negative", 100.0, (-0.30, -0.45, -0.15), q=0.02),  # at least 0.15 (in size)
                cell("tie", 100.0, (0.05, -0.01, 0.11), q=0.2))  # 0 as well, smaller q than "wide"
    found = discovery.discover(agg, RULES)
    ranked = found.ranked
    assert ranked.reconstructor.tolist() == ["negative", "narrow", "tie", "wide"]
    assert ranked.statistic.tolist() == pytest.approx([0.15, 0.10, 0.0, 0.0])
    assert ranked["rank"].tolist() == [1, 2, 3, 4] and found.scanned == 4 and found.left_out.empty
    shown = discovery.table(found)
    assert shown[discovery.STATISTIC].tolist() == pytest.approx([0.15, 0.10, 0.0, 0.0])
    assert shown[discovery.INTERVAL].iloc[0] == "-0.300 [-0.450, -0.150]"
    assert shown["difference: clean → reconstructed"].iloc[0] == "+0.100 → -0.200 (widens; sign reversed)"
    assert shown["difference: clean → reconstructed"].iloc[1] == "+0.100 → +0.300 (widens)"
    assert shown["units per group"].iloc[0] == "F: 50 · M: 50" and shown["subgroups by"].iloc[0] == "Sex"
    assert shown["test"].iloc[0] == "p 0.010 · q 0.020 (primary)"
    assert not set(shown.columns) & (set(NAMES) | {"tpr_diff_added", "estimate"})  # human headers only


def test_narrowings_are_counted_apart_and_never_ranked():
    """A change that moves the clean difference (+0.1) toward 0 is no added gap, however sure: it is counted apart."""
    agg = frame(cell("toward", 100.0, (-0.08, -0.09, -0.07), q=0.001),  # +0.1 → +0.02: narrows, interval excludes 0
                cell("flip", 100.0, (-0.15, -0.25, -0.05), q=0.01),  # +0.1 → -0.05: narrows (sign reversed)
                cell("away", 100.0, (0.05, 0.01, 0.09), q=0.03),  # +0.1 → +0.15: widens
                cell("same", 100.0, (-0.2, -0.3, -0.1), q=0.02))  # +0.1 → -0.1: |difference| as it was
    found = discovery.discover(agg, RULES)
    assert found.ranked.reconstructor.tolist() == ["away"]
    assert found.ranked.statistic.tolist() == pytest.approx([0.01])
    assert dict(zip(found.candidates.reconstructor, found.candidates.direction, strict=True)) == {
        "toward": "narrows", "flip": "narrows", "away": "widens", "same": "unchanged"}
    assert (found.candidates.set_index("reconstructor").statistic[["toward", "flip", "same"]] == 0).all()
    line, = discovery.apart_text(found)
    assert line.startswith("Not ranked: 2 narrowings") and "2 of them with an interval that excludes 0" in line
    assert "; and 1 change that leaves |difference| as it was" in line
    assert "narrowing" in discovery.ranking_rule(0.95) and "|reconstructed difference| > |clean difference|" in \
        discovery.ranking_rule(0.95)


def test_the_degraded_image_is_a_reference_not_a_reconstructor():
    """`none` returns the degraded image: its widenings are counted apart under that name, never ranked or named top."""
    agg = frame(cell("none", 100.0, (0.6, 0.5, 0.7), q=0.001), cell("unet", 100.0, (0.2, 0.1, 0.3), q=0.01))
    found = discovery.discover(agg, RULES, reference=("none",))
    assert found.ranked.reconstructor.tolist() == ["unet"]
    line, = discovery.apart_text(found)
    assert line.startswith("Reference, not ranked: none (the degraded image)") and "1 widening" in line
    assert "0.500" in line  # its largest plausible increase, as a reference
    first, _ = discovery.selection_effect(found)
    assert "with unet at 100" in first and "none" not in first
    assert discovery.discover(agg, RULES).ranked.reconstructor.tolist() == ["none", "unet"]  # no reference named


def test_a_zero_width_interval_is_no_evidence():
    """Resamples without spread store the estimate as both bounds: that says nothing plausible, so 0, not |estimate|."""
    found = discovery.discover(frame(cell("flat", 100.0, (0.3, 0.3, 0.3), q=float("nan")),
                                     cell("spread", 100.0, (0.1, 0.05, 0.15), q=0.01)), RULES)
    assert found.ranked.reconstructor.tolist() == ["spread", "flat"]
    assert found.ranked.statistic.tolist() == pytest.approx([0.05, 0.0])


def test_the_interval_is_said_at_the_runs_level_and_as_simultaneous():
    found = discovery.discover(frame(cell("unet", 100.0, (0.3, 0.2, 0.4), q=0.01)), RULES, level=0.9)
    words = "the stored interval (the run's ci_level, 90 %; simultaneous over an attribute's k contrasts where k > 1)"
    assert words in discovery.selection_effect(found)[0] and words in discovery.ranking_rule(found.level)
    helps = discovery.column_help(found.level)
    assert words in helps[discovery.STATISTIC] and words in helps[discovery.INTERVAL]
    assert not any("95 %" in h for h in helps.values())
    assert discovery.select(found, reconstructors=["unet"]).level == 0.9
    assert exports.ci_level({"evaluation": {"ci_level": 0.9}}) == 0.9  # the page reads the level with this


def test_the_size_rules_leave_out_a_too_small_group_and_say_why():
    agg = frame(cell("big", 100.0, (0.2, 0.1, 0.3), q=0.01),
                cell("small", 100.0, (0.6, 0.4, 0.8), q=0.001, sizes=(8, 92)),  # 8 units < 10
                cell("few", 100.0, (0.5, 0.3, 0.7), q=0.001, positives=(3, 30)),  # 3 positives < 5: TPR needs them
                cell("negatives", 100.0, (0.5, 0.3, 0.7), q=0.001, positives=(47, 20), metric="fpr"),  # 3 negatives
                cell("rate", 100.0, (0.4, 0.3, 0.5), q=0.001, positives=(3, 30), metric="sel"))  # units only
    found = discovery.discover(agg, RULES)
    assert found.ranked.reconstructor.tolist() == ["rate", "big"]  # the larger changes were all left out
    why = dict(zip(found.left_out.reason, found.left_out.candidates, strict=True))
    assert why == {"a group with fewer than 10 units": 1, "a group with fewer than 5 positives": 1,
                   "a group with fewer than 5 negatives": 1}
    assert discovery.left_out_text(found).startswith("Left out by the size rules: 3 of 5 candidates")
    stricter = discovery.discover(agg, Minimums(group_size=60, positives=5, negatives=5))
    assert stricter.ranked.empty  # every cell has a side below 60 units


def test_a_rest_side_is_the_contrast_less_its_group():
    """'F & 60+ − rest': the rest's units and positives are the contrast's less the named group's."""
    rows = cell("unet", 100.0, (0.3, 0.2, 0.4), q=0.01, sizes=(45, 5), positives=(10, 0), attribute="sex×age_band",
                groups=("F & 60+", "rest"))
    agg = frame([r for r in rows if r["grp"] != "rest"])  # a 'rest' has no per-group row of its own
    found = discovery.discover(agg, RULES)
    assert found.ranked.empty and found.left_out.reason.tolist() == ["a group with fewer than 10 units"]
    assert found.candidates.n_other.tolist() == [5] and found.candidates.pos_other.tolist() == [0]


def test_an_attribute_with_one_group_gives_a_clear_empty_result():
    one = pd.DataFrame([row("unet", 100.0, "tpr", "F", 0.8, n=100, n_pos=30),  # one group: no contrast is stored
                        row("unet", 100.0, "tpr", "all", 0.8, n=100, n_pos=30, attribute="all")],
                       columns=AGGREGATE_COLUMNS)
    found = discovery.discover(one, RULES)
    assert found.scanned == 0 and found.ranked.empty and found.left_out.empty
    assert discovery.table(found).empty
    text = discovery.selection_effect(found)
    assert len(text) == 1 and text[0].startswith("No candidate to rank") and "two groups" in text[0]
    small = discovery.discover(frame(cell("unet", 100.0, (0.2, 0.1, 0.3), q=0.01, sizes=(4, 96))), RULES)
    assert "1 added group difference was scanned and none widened a difference on a reconstruction and met" in \
        discovery.selection_effect(small)[0]


def test_the_selection_effect_is_said_with_the_numbers():
    agg = frame(cell("unet", 100.0, (0.3, 0.2, 0.4), q=0.01), cell("tv", 300.0, (0.1, -0.1, 0.3), q=float("nan")))
    found = discovery.discover(agg, RULES)
    first, second = discovery.selection_effect(found, "photons/pixel")
    assert "2 candidate changes were scanned" in first and "2 widenings on a reconstruction met" in first
    assert "1 of them has the stored interval (the run's ci_level, 95 %" in first
    assert "of those, 1 has q < 0.05 in their family" in first
    assert "with unet at 100 photons/pixel, changed by +0.300 [+0.200, +0.400]" in first
    assert "first of 2 by its plausible increase" in first and "largest of" not in first
    assert "overstated (biased away from 0; the winner's curse)" in first and "upward" not in first
    assert "confirm it there" in first
    assert "(primary: 1 tests, over the whole run" in second
    assert "1 ranked candidate belongs to no family" in second and "is descriptive only" in second
    assert "does not remove the overstatement" in second and "upward" not in second


def test_a_negative_top_change_is_overstated_not_biased_upward_and_q_is_counted_within_its_family():
    """The top change here is negative: its size is overstated away from 0; of the 3 plausible, 2 have q < 0.05."""
    agg = frame(cell("a", 100.0, (-0.5, -0.7, -0.3), q=0.01), cell("b", 100.0, (0.3, 0.1, 0.5), q=0.2),
                cell("c", 100.0, (0.25, 0.05, 0.45), q=0.04), cell("d", 100.0, (0.2, -0.1, 0.5), q=np.nan),
                cell("e", 100.0, (0.2, -0.1, 0.5), q=np.nan))
    first, second = discovery.selection_effect(discovery.discover(agg, RULES))
    assert "5 widenings" in first and "3 of them have the stored interval" in first
    assert "of those, 2 have q < 0.05 in their family" in first and "changed by -0.500 [-0.700, -0.300]" in first
    assert "biased away from 0" in first and "2 ranked candidates belong to no family" in second
    assert "are descriptive only" in second


def test_stars_count_a_maps_and_its_familys_q_below_005():
    """The heat map's ★ note: its own rows' q < 0.05 and the whole family's, and whether some lie on other maps."""
    agg = frame(cell("unet", 100.0, (0.3, 0.2, 0.4), q=0.01), cell("tv", 100.0, (0.3, 0.2, 0.4), q=0.02),
                cell("gan", 100.0, (0.3, 0.2, 0.4), q=0.5, attribute="age_band", groups=("60+", "<60")))
    shown = agg[(agg.metric == "tpr_diff_added") & (agg.attribute == "age_band")]
    stars = discovery.stars(agg, shown)
    assert (stars.family, stars.on_map, stars.in_family, stars.tests) == ("primary", 0, 2, 3) and stars.elsewhere
    assert stars.text() == ("★ on this map: 0 cells. In the whole primary family 2 of 3 tests have q < 0.05: Weak "
                            "subgroups ranks where they are.")
    here = discovery.stars(agg, agg[(agg.metric == "tpr_diff_added") & (agg.attribute == "sex")])
    assert not here.elsewhere and here.text().startswith("★ on this map: 2 cells.") and here.text().endswith("0.05.")
    assert discovery.stars(agg, agg[agg.metric == "tpr_diff"]) is None  # an untested map says nothing


def test_attribute_text_names_an_intersection_in_words():
    assert attribute_text("sex×age_band") == "Sex × age band" and attribute_text("sex") == "Sex"


def test_run_minimums_come_from_the_stored_config():
    assert discovery.run_minimums({"evaluation": {"min_group_size": 30, "min_positives": 8}}) == Minimums(30, 8, 5)
    assert discovery.run_minimums(None) == Minimums(10, 5, 5)


@pytest.mark.parametrize("store_fixture", ["built_store", "mri_store"])
def test_the_tiny_stores_ranking_is_their_stored_rows_in_order(store_fixture, request):
    store, key, _ = request.getfixturevalue(store_fixture)
    agg = queries.aggregates(store, key)
    config = queries.run_config(store, key)
    reference = run_view(store, key).returns_degraded
    found = discovery.discover(agg, discovery.run_minimums(config), exports.ci_level(config), reference)
    stored = agg[agg.metric.str.endswith("_diff_added") & (agg.reconstructor != CLEAN) & (agg.attribute != "all")]
    assert found.scanned == len(stored) > 0
    assert found.scanned == len(found.ranked) + len(found.apart) + int(found.left_out.candidates.sum())
    ranked = found.ranked
    assert len(ranked) > 0 and not set(ranked.reconstructor) & set(reference)  # no degraded-image road
    assert (ranked.recon_diff.abs() > ranked.clean_diff.abs()).all()  # widenings only
    statistic = ranked.statistic.to_numpy()
    assert (np.diff(statistic) <= 0).all()  # sorted by the stated statistic
    expected = np.where(((ranked.ci_low > 0) | (ranked.ci_high < 0)) & (ranked.ci_high > ranked.ci_low),
                        np.minimum(ranked.ci_low.abs(), ranked.ci_high.abs()), 0.0)
    assert statistic == pytest.approx(expected)
    for _, tie in ranked.groupby("statistic"):  # ties: the smaller q first, untested last
        q = tie.q_value.fillna(np.inf).to_numpy()
        assert (np.diff(q) >= 0).all()
    keys = ["reconstructor", "level", "metric", "label", "attribute", "grp"]
    back = ranked[[*keys, "estimate", "q_value", "family"]].merge(agg[[*keys, "estimate", "q_value", "family"]],
                                                                  on=keys, suffixes=("", "_stored"))
    assert len(back) == len(ranked)  # every ranked row is a stored row, its numbers unchanged
    assert np.allclose(back.estimate, back.estimate_stored, equal_nan=True)
    assert np.allclose(back.q_value, back.q_value_stored, equal_nan=True)
    assert (back.family.fillna("") == back.family_stored.fillna("")).all()
    rules = discovery.run_minimums(queries.run_config(store, key))
    assert (ranked[["n_first", "n_other"]].to_numpy() >= rules.group_size).all()
    one = discovery.select(found, attributes=["sex"])
    assert set(one.ranked.attribute) == {"sex"} and one.ranked["rank"].tolist() == list(range(1, len(one.ranked) + 1))
