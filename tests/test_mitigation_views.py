"""The mitigation views' read model: verdicts in words, the Pareto flags and the frontier chart (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from recon_core import plots, results
from recon_core.config_loader import from_dict, load_config
from recon_core.results import NO_CHANGE, verdict
from recon_core.store import queries
from tests.conftest import TINY

NAN = np.nan


@pytest.mark.parametrize(("base", "change", "expected"), [
    (0.10, (-0.05, -0.08, -0.02), "gap narrowed"),  # toward 0
    (-0.10, (0.05, 0.02, 0.08), "gap narrowed"),  # a rise of a negative difference is a narrower gap
    (0.10, (0.05, 0.02, 0.08), "gap widened"),
    (-0.10, (-0.05, -0.08, -0.02), "gap widened"),  # a fall of a negative difference widens it
    (0.10, (-0.15, -0.18, -0.12), "gap narrowed (difference reversed sign)"),  # 0.10 → −0.05
    (0.10, (-0.25, -0.28, -0.22), "gap widened (difference reversed sign)"),  # 0.10 → −0.15
    (0.0, (0.05, 0.02, 0.08), "gap widened"),  # away from no difference at all
    (0.10, (-0.15, -0.25, -0.05), "difference changed (narrower or wider not established)"),  # across −2D
    (0.10, (-0.05, -0.08, 0.01), NO_CHANGE),  # the interval covers 0
    (NAN, (-0.05, -0.08, -0.02), "difference changed (the base's difference is unknown)"),
])
def test_a_signed_difference_narrows_only_when_it_moves_toward_zero(base, change, expected):
    assert verdict("tpr_diff", *change, base_value=base) == expected


def test_a_q_value_at_or_above_alpha_is_no_change_even_when_the_interval_excludes_zero():
    assert verdict("tpr_diff", -0.05, -0.08, -0.02, q_value=0.2, base_value=0.1) == NO_CHANGE
    assert verdict("tpr_diff", -0.05, -0.08, -0.02, q_value=0.01, base_value=0.1) == "gap narrowed"
    assert verdict("auroc", 0.02, 0.01, 0.03, q_value=0.05) == NO_CHANGE


@pytest.mark.parametrize(("metric", "estimate", "expected"), [
    ("eo_gap", -0.03, "gap narrowed"), ("eodd", 0.03, "gap widened"), ("dice_gap", -0.03, "gap narrowed"),
    ("tpr_ratio", 0.03, "gap narrowed"), ("dice_skewed_error_ratio", 0.3, "gap widened"),
    ("auroc", 0.02, "gain"), ("dice", -0.02, "cost"), ("psnr", -0.4, "cost"), ("ssim", 0.01, "gain"),
    ("fpr", 0.02, "cost"), ("fpr", -0.02, "gain"),
])
def test_folded_gaps_narrow_when_they_fall_and_quality_or_task_is_a_gain_or_cost(metric, estimate, expected):
    low, high = sorted((estimate * 0.5, estimate * 1.5))
    assert verdict(metric, estimate, low, high) == expected
    assert verdict(metric, estimate, -abs(estimate), abs(estimate)) == NO_CHANGE
    assert verdict(metric, NAN, NAN, NAN) == "no estimate"


def effects_and_aggregates() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two stored changes of unet+eodd against unet at 300 and the base's own signed difference there."""
    effects = pd.DataFrame({
        "reconstructor": ["unet+eodd"] * 3, "base": ["unet"] * 3, "level": [300.0] * 3,
        "metric": ["tpr_diff_change", "eo_gap_change", "ssim_change"], "label": ["nodule", "mean", ""],
        "attribute": ["sex", "sex", "all"], "grp": ["F − M", "", "all"], "estimate": [0.06, -0.02, -0.0005],
        "ci_low": [0.02, -0.05, -0.0007], "ci_high": [0.10, 0.01, -0.0003], "n": [120] * 3,
        "p_value": [0.004, NAN, NAN], "family": ["mitigation", None, None], "q_value": [0.03, NAN, NAN]})
    agg = pd.DataFrame({"reconstructor": ["unet", "unet+eodd"], "level": [300.0, 300.0],
                        "metric": ["tpr_diff", "tpr_diff"], "label": ["nodule", "nodule"],
                        "attribute": ["sex", "sex"], "grp": ["F − M", "F − M"], "estimate": [-0.08, -0.02]})
    return effects, agg


def test_judged_effects_carry_human_names_and_the_base_difference_behind_a_verdict():
    effects, agg = effects_and_aggregates()
    judged = results.judge_effects(effects, agg)
    assert judged.base_value.iloc[0] == -0.08  # the base's own difference, not the variant's
    assert judged.verdict.tolist() == ["gap narrowed", NO_CHANGE, "cost"]  # −0.08 → −0.02; CI covers 0; SSIM fell
    assert judged.strategy.iloc[0] == "equalized-odds loss" and judged.groups.tolist() == ["F − M", "max − min",
                                                                                          "everyone"]
    shown = results.effects_table(judged)
    assert not shown.isin(["tpr_diff_change", "eo_gap_change", "ssim_change", "tpr_diff"]).any().any()
    assert shown.statistic.tolist() == ["Sensitivity (TPR) difference change",
                                        "Equal-opportunity gap (max − min TPR) change", "SSIM change"]
    assert shown["change vs base [95 % CI]"].iloc[0] == "+0.060 [+0.020, +0.100]"
    assert shown.test.tolist() == ["p 0.004 · q 0.030 (mitigation)", "descriptive: no test", "descriptive: no test"]
    assert shown.loc[2, "change vs base [95 % CI]"] == "-0.0005 [-0.0007, -0.0003]"  # never shown as -0.000


def frontier_points() -> pd.DataFrame:
    """Four points at one level and one at another: (reconstructor, level, gap, task)."""
    rows = [("unet", 300.0, 0.20, 0.80), ("unet+eodd", 300.0, 0.10, 0.78), ("unet+reweight", 300.0, 0.15, 0.77),
            ("unet+adversarial", 300.0, 0.10, 0.78), ("unet", 3000.0, 0.30, 0.70), ("unet+eodd", 3000.0, NAN, 0.9)]
    frame = pd.DataFrame(rows, columns=["reconstructor", "level", "gap", "task"])
    return frame.assign(gap_low=frame.gap - 0.02, gap_high=frame.gap + 0.02, task_low=frame.task - 0.01,
                        task_high=frame.task + 0.01, base="unet", strategy="s")


def test_pareto_flags_the_points_no_other_beats_at_their_own_level():
    frame = frontier_points()
    # reweight is beaten by eodd (smaller gap, higher task); ties beat nobody; unet alone at 3000 is optimal;
    # a point without a gap is never optimal
    assert results.pareto(frame).tolist() == [True, True, False, True, True, False]


def test_the_frontier_chart_draws_points_at_their_values_with_rings_on_the_optimal_ones():
    frame = frontier_points()
    frame = frame.assign(pareto=results.pareto(frame))
    fig = plots.mitigation_frontier(frame, "t", "gap", "task", "dose", colours={"unet": "#111111"})
    points = {(t.name, t.xaxis): (list(t.x), list(t.y)) for t in fig.data if t.mode == "markers"}
    assert points["unet", "x"] == ([0.20], [0.80]) and points["unet", "x2"] == ([0.30], [0.70])
    assert points["unet+eodd", "x"] == ([0.10], [0.78])
    unet = next(t for t in fig.data if t.name == "unet")
    assert unet.marker.color == "#111111" and unet.marker.symbol == "circle"
    assert next(t for t in fig.data if t.name == "unet+eodd").marker.symbol == "diamond"
    rings = [t for t in fig.data if t.name == "Pareto-optimal"]
    assert [sorted(zip(t.x, t.y, strict=True)) for t in rings] == [[(0.10, 0.78), (0.10, 0.78), (0.20, 0.80)],
                                                                    [(0.30, 0.70)]]
    assert [a.text for a in fig.layout.annotations] == ["dose 300", "dose 3000"]


def test_every_verdict_agrees_with_the_stored_interval_and_q_value(built_store):
    """On the tiny run: a change whose stored interval covers 0 (or whose q ≥ 0.05) says 'no significant change';
    the others a direction; a signed difference is judged against the base's own stored difference."""
    store, key, _ = built_store
    stored = queries.mitigation_effects(store, key)
    judged = results.mitigation_effects(store, key)
    assert len(judged) == len(stored) > 0
    assert sorted(judged.estimate.dropna()) == sorted(stored.estimate.dropna())  # the stored numbers, unchanged
    known = judged[judged.estimate.notna() & judged.ci_low.notna()]
    covers = (known.ci_low <= 0) & (known.ci_high >= 0)
    rejected = known.q_value.notna() & (known.q_value >= results.ALPHA)
    assert covers.any() and (~covers & ~rejected).any()  # both kinds of row are on the tiny run
    assert (known[covers | rejected].verdict == NO_CHANGE).all()
    directional = known[~covers & ~rejected]
    assert not (directional.verdict == NO_CHANGE).any()
    quality = directional[directional.metric.isin(["psnr", "ssim"])]
    assert (quality.verdict == np.where(quality.estimate > 0, "gain", "cost")).all()
    assert (judged[judged.estimate.isna()].verdict == "no estimate").all()
    signed = judged[judged.metric.str.endswith("_diff") & judged.estimate.notna()].iloc[0]
    agg = queries.aggregates(store, key, [signed.metric])
    own = agg[(agg.reconstructor == signed.base) & (agg.level == signed.level) & (agg.label == signed.label)
              & (agg.attribute == signed.attribute) & (agg.grp == signed.groups)]
    assert signed.base_value == own.estimate.item()


def test_the_frontier_holds_each_variant_and_its_base_at_their_stored_values(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    frontier = results.mitigation_frontier(store, key, "sex")
    assert set(frontier.reconstructor) == {"unet", *results.variants(run.reconstructors)}
    assert frontier.level.tolist()[0] == 3000.0  # the mildest level first
    agg = queries.aggregates(store, key, ["eo_gap", "auroc"])
    for row in frontier.itertuples():
        cell = agg[(agg.reconstructor == row.reconstructor) & (agg.level == row.level) & (agg.label == "mean")]
        assert row.gap == cell[(cell.metric == "eo_gap") & (cell.attribute == "sex")].estimate.item()
        assert row.task == cell[(cell.metric == "auroc") & (cell.attribute == "all")].estimate.item()
    assert frontier.groupby("level").pareto.any().all()
    assert (frontier[frontier.reconstructor == "unet"].strategy == "plain training").all()


def test_the_empty_state_example_declares_variants_a_config_accepts():
    spec = load_config(TINY).to_dict()
    spec["reconstructors"] = {**spec["reconstructors"], **yaml.safe_load(results.VARIANT_EXAMPLE)["reconstructors"]}
    config = from_dict(spec)
    assert results.variants(config.reconstructors.names) == ["unet+finetune", "unet+reweight", "unet+eodd",
                                                             "unet+adversarial"]
    assert config.reconstructors.mitigation.steps == 200
