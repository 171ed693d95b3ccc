"""The findings panel's sentences quote the store's own aggregates, and say 'none' when no test is significant."""

from __future__ import annotations

import numpy as np
import pytest

from recon_core import findings, results
from recon_core.report import build_report
from recon_core.results import interval_text
from recon_core.store import CLEAN, queries


def stored(agg, reconstructor: str, level: float, metric: str, label: str):
    """The store's overall row of one metric for one cell, read here independently of the findings module."""
    rows = agg[(agg.reconstructor == reconstructor) & (agg.level == level) & (agg.metric == metric)
               & (agg.label == label) & (agg.attribute == "all")]
    assert len(rows) == 1
    return rows.iloc[0]


def check_against_store(store, key) -> list[findings.Finding]:
    """Every number a degradation and ranking finding quotes equals the stored aggregate it names."""
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    found = findings.study_findings(agg, run)
    quality, task = run.curves[0], run.curves[1]
    levels = run.mildest_first(sorted(set(agg.loc[agg.reconstructor != CLEAN, "level"])))
    mild, worst = levels[0], levels[-1]
    degradations = [f for f in found if f.kind == "degradation"]
    assert [f.reconstructor for f in degradations] == list(run.reconstructors)  # one each, in the run's order
    for f in degradations:
        first, last = (stored(agg, f.reconstructor, lv, quality.metric, quality.label) for lv in (mild, worst))
        assert f.numbers["quality_mild"] == pytest.approx(first.estimate)
        assert f.numbers["quality_worst"] == pytest.approx(last.estimate)
        assert f.numbers["quality_worst_low"] == pytest.approx(last.ci_low)
        assert f.numbers["quality_change"] == pytest.approx(last.estimate - first.estimate)
        assert f"{abs(last.estimate - first.estimate):.1f} dB from {mild:g} to {worst:g}" in f.text
        assert interval_text(last.estimate, last.ci_low, last.ci_high) in f.text
        added = stored(agg, f.reconstructor, worst, f"{task.metric}_added", task.label)
        assert f.numbers["task_added_worst"] == pytest.approx(added.estimate)
        assert f.numbers["task_added_worst_high"] == pytest.approx(added.ci_high)
        assert interval_text(added.estimate, added.ci_low, added.ci_high, signed=True) in f.text
        assert f.numbers["task_clean"] == pytest.approx(stored(agg, CLEAN, 0.0, task.metric, task.label).estimate)
        assert task.axis in f.text
    ranking = next(f for f in found if f.kind == "ranking")
    for level in levels:  # the best by quality and by the task, found here without the module
        cells = agg[(agg.reconstructor != CLEAN) & (agg.level == level) & (agg.attribute == "all")]
        by_quality = cells[(cells.metric == quality.metric) & (cells.label == quality.label)]
        by_task = cells[(cells.metric == task.metric) & (cells.label == task.label)]
        best_q = by_quality.loc[by_quality.estimate.idxmax()]
        best_t = by_task.loc[by_task.estimate.idxmax()]
        tag = f"{level:g}"
        if best_q.reconstructor == best_t.reconstructor:
            assert f"quality_best@{tag}" not in ranking.numbers
        else:
            assert ranking.numbers[f"quality_best@{tag}"] == pytest.approx(best_q.estimate)
            assert ranking.numbers[f"task_best@{tag}"] == pytest.approx(best_t.estimate)
            assert f"at {tag} {run.level.unit}, {best_q.reconstructor}" in ranking.text
    return found


def test_findings_quote_the_xray_stores_numbers_and_say_none(built_store):
    store, key, _ = built_store
    found = check_against_store(store, key)
    assert [f.kind for f in found][-2:] == ["ranking", "added_bias"]
    bias = found[-1]
    agg = queries.aggregates(store, key)
    primary = agg[(agg.family == "primary") & agg.p_value.notna()]
    assert bias.numbers["tests"] == len(primary)
    assert bias.numbers["significant"] == (primary.q_value < 0.05).sum()
    assert "primary test family" in bias.text and f"{len(primary)} tests" in bias.text
    assert ("none" in bias.text) == (not (primary.q_value < 0.05).any())


def test_findings_on_mri_use_dice_and_the_acceleration(mri_store):
    store, key, _ = mri_store
    found = check_against_store(store, key)
    assert all("Dice" in f.text and " ×" in f.text for f in found if f.kind == "degradation")
    assert "Tumour Dice difference added" in found[-1].text  # MRI's primary test, named


def test_a_significant_primary_test_is_named_and_none_is_not_said(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    primary = agg.index[(agg.family == "primary") & agg.p_value.notna()]
    agg.loc[primary, "q_value"] = 0.5
    agg.loc[primary[0], "q_value"] = 0.01  # one test made significant
    row = agg.loc[primary[0]]
    bias = findings.study_findings(agg, run)[-1]
    assert bias.numbers["significant"] == 1 and bias.numbers["q_0"] == 0.01
    assert "none" not in bias.text and "1 test in 1 reconstructor × level cell has q < 0.05" in bias.text
    assert f"{row.reconstructor} at {row.level:g} {run.level.unit}" in bias.text and str(row.grp) in bias.text
    others = [r for r in run.reconstructors if r != row.reconstructor]
    assert "none —" in findings.study_findings(agg, run, others)[-1].text  # not among those shown
    agg["q_value"] = np.nan  # a run still landing: no q-values yet
    assert "not tested yet" in findings.study_findings(agg, run)[-1].text


def test_the_report_opens_with_the_findings(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    page = build_report(store, key, list(run.reconstructors), [3000.0, 300.0])
    assert page.index("What this study shows") < page.index("Per cell, with 95 % CI")
    assert "primary test family" in page


def test_hallucination_finding_quotes_the_known_truth_check_most_often_first(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    worst = run.mildest_first(sorted(set(agg.loc[agg.reconstructor != CLEAN, "level"])))[-1]
    checks = {r: results.hallucination_rates(store, key, r, worst, ["sex"]) for r in run.reconstructors}
    found = findings.study_findings(agg, run, checks=checks)
    assert found[-1].kind == "hallucination" and f"Known truth at {worst:g} {run.level.unit}" in found[-1].text
    text, numbers = found[-1].text, found[-1].numbers
    for kind in ("invented", "erased"):
        stored = {r: c.rates[(c.rates.detector == "diagnostic model") & (c.rates.kind == kind)
                             & (c.rates.attribute == "all")].rate.iloc[0] for r, c in checks.items()}
        for r, rate in stored.items():  # every reconstructor's rate is the check's own
            assert numbers[f"{kind}@{r}"] == pytest.approx(rate)
        ranked = sorted((r for r in stored if r not in run.returns_degraded), key=lambda r: -stored[r])
        if stored[ranked[0]] == 0:
            assert f"{kind}@{ranked[0]}_low" not in numbers  # nothing happened: not said
            continue
        top = ranked[0]
        assert f"on {top}'s images" in text and f"{100 * stored[top]:.1f} %" in text
        sex = checks[top].rates
        for grp in ("F", "M"):
            rate = sex[(sex.detector == "diagnostic model") & (sex.kind == kind) & (sex.grp == grp)].rate.iloc[0]
            if np.isfinite(rate):
                assert numbers[f"{kind}@{top}:{grp}"] == pytest.approx(rate)
        # the rest in falling order, as the sentence lists them
        positions = [text.index(f" {r} {100 * stored[r]:.1f} %") for r in ranked[1:]]  # each one named
        assert positions == sorted(positions)
    assert findings.study_findings(agg, run, checks={})[-1].kind == "added_bias"  # no checks handed over: no sentence
    unavailable = {r: results.HallucinationCheck(c.rates.iloc[:0], "no sites") for r, c in checks.items()}
    assert findings.hallucinations(unavailable, run, worst) is None
