"""Quality–task correlations: pooled across cells (confounded by the level) and within levels (reconstructors as units).

The synthetic run has quality and task both falling with the level, while within each level the
reconstructors' task ranking is set against their quality ranking: unrelated (ρ = 0) or reversed
(ρ = −1). The pooled ρ must come out clearly positive and the within-levels ρ at the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recon_core import results
from recon_core.fairness.correlation import COLUMNS, quality_task_correlations

LEVELS = {0.0: 4, 1.0: 4, 2.0: 4, 3.0: 2}
"""Reconstructors per level: the last level has too few to rank within it."""


def synthetic_cells(task_ranks: tuple[int, ...], n: int = 300, seed: int = 0) -> dict:
    """(reconstructor, level) → rows. PSNR rises with the reconstructor's index; the task follows `task_ranks`.

    Both fall steeply with the level, so across cells they move together whatever happens within a level.
    """
    rng = np.random.default_rng(seed)
    target = (rng.random(n) < 0.4).astype(float)
    base = rng.normal(size=n)  # each image's own difficulty, the same on every road
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    cells = {}
    for level, count in LEVELS.items():
        for r in range(count):
            psnr = 36 - 5 * level + 0.6 * r + rng.normal(0, 1, n)
            signal = 2.4 - 0.8 * level + 0.12 * task_ranks[r]
            score = 1 / (1 + np.exp(-(target * signal + base + rng.normal(0, 0.3, n))))
            cells[f"r{r}", level] = pd.DataFrame({
                "image_id": [f"i{i:03d}" for i in range(n)], "psnr": psnr,
                "ssim": 0.9 - 0.05 * level + 0.01 * r + rng.normal(0, 0.01, n), "sex": sex,
                "target:a": target, "score:a": score})
    return cells


@pytest.mark.parametrize("task_ranks,truth", [((2, 4, 1, 3), 0.0), ((4, 3, 2, 1), -1.0)])
def test_pooled_rho_follows_the_level_and_within_levels_rho_finds_the_truth(task_ranks, truth):
    table = quality_task_correlations(synthetic_cells(task_ranks), ["a"], {"a": 0.5}, attributes=["sex"],
                                      n_resamples=300)
    rows = table[(table.x_metric == "psnr") & (table.y_metric == "auroc")].set_index("scope")
    pooled, within = rows.loc["pooled"], rows.loc["within levels"]
    assert pooled.estimate > 0.8 and pooled.ci_low > 0.5 and pooled.n_cells == 14  # confounded by the level
    assert abs(within.estimate - truth) < 0.25 and within.ci_low <= truth <= within.ci_high
    assert within.n_cells == 12  # the level with two reconstructors is skipped …
    assert sorted(i for i in rows.index if i.startswith("level")) == ["level 0", "level 1", "level 2"]
    assert rows.loc[["level 0", "level 1", "level 2"]].n_cells.eq(4).all()
    # … and the within-levels point estimate is the mean of the levels'
    assert within.estimate == pytest.approx(rows.loc[["level 0", "level 1", "level 2"]].estimate.mean())
    # the per-attribute pair is taken within levels too
    gap = table[table.attribute == "sex"]
    assert {"pooled", "within levels", "level 1", "level 2"} <= set(gap.scope)
    assert list(table.columns) == COLUMNS


def test_too_few_cells_give_an_empty_table_with_the_scope_column():
    cells = dict(list(synthetic_cells((1, 2, 3, 4)).items())[:2])
    table = quality_task_correlations(cells, ["a"], {"a": 0.5}, attributes=["sex"], n_resamples=10)
    assert table.empty and "scope" in table


def test_the_table_shows_within_levels_first_then_each_level_then_pooled_named_as_confounded():
    corr = pd.DataFrame({"scope": ["pooled", "level 300", "within levels", "level 3000"],
                         "x_metric": "psnr", "y_metric": "auroc", "attribute": "all",
                         "estimate": [0.8, -0.2, 0.1, np.nan], "ci_low": [0.7, -0.9, -0.5, np.nan],
                         "ci_high": [0.9, 0.7, 0.6, np.nan], "n_cells": [10, 5, 10, 5]})
    shown = results.correlation_table(corr, [3000.0, 300.0])
    assert shown.columns[0] == "scope"
    assert shown.scope.tolist() == ["within levels", "level 3000", "level 300", "pooled (confounded by level)"]
    assert shown["Spearman ρ [95 % CI]"].iloc[1] == "— (a side is constant or has no estimate)"
    assert results.correlation_table(corr).scope.tolist()[1:3] == ["level 300", "level 3000"]  # else by value


def test_the_correlations_eo_gap_is_the_cell_summarys():
    """One definition everywhere: a cell's EO gap in the correlation equals its summary's label-mean EO gap,
    minimum positives included (a finding with 3 positives in one group is left out of both)."""
    from recon_core.fairness import summarise_cell
    from recon_core.fairness.correlation import _cell_samples
    from recon_core.fairness.resampling import plan
    from recon_core.fairness.summary import Minimums

    rng = np.random.default_rng(2)
    n = 200
    rows = pd.DataFrame({"image_id": [f"i{i:03d}" for i in range(n)], "sex": np.where(np.arange(n) % 2, "F", "M"),
                         "age_band": "<60", "psnr": rng.normal(30, 1, n), "ssim": rng.random(n), "nmse": np.nan})
    for label, share in (("a", 0.4), ("b", 0.4)):
        rows[f"target:{label}"] = (rng.random(n) < share).astype(float)
        rows[f"score:{label}"] = np.clip(0.3 * rows[f"target:{label}"] + rng.random(n) * 0.7, 0, 1)
    women_b = rows.index[(rows.sex == "F") & (rows["target:b"] == 1)]
    rows.loc[women_b[3:], "target:b"] = 0.0  # 3 positives for b among women: below the minimum of 5
    thresholds = {"a": 0.5, "b": 0.5}
    summary = summarise_cell(rows, ["a", "b"], thresholds, attributes=("sex",), n_resamples=50)
    expected = summary[(summary.metric == "eo_gap") & (summary.label == "mean")].estimate.iloc[0]
    weights = plan(rows, ("sex",), 50, 0)
    got = _cell_samples(rows, ["a", "b"], thresholds, ("sex",), weights, ["psnr"], Minimums())["eo_gap:sex"][0]
    assert got == pytest.approx(expected)
    single = summary[(summary.metric == "eo_gap") & (summary.label == "a")].estimate.iloc[0]
    assert got == pytest.approx(single)  # b has no gap: the mean is a's alone
