"""Regression: the tiny X-ray and MRI studies store the same aggregates as the golden files made before the redesign.

Estimates, intervals, p- and q-values, correlations and thresholds are compared to 1e-6 (relative
and absolute): exact on the machine that made them, and tolerant only of the last bits a
different CPU's float kernels may move. A change of RNG stream, of training order or of a
statistic moves them by far more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core.runner import run_study, study
from recon_core.store import Store, queries
from tests.golden import COLUMNS, golden_path, golden_rows

KEYS = COLUMNS[:7]
VALUES = ["estimate", "ci_low", "ci_high", "p_value", "q_value"]


def compare(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    text = {k: "" for k in KEYS if k != "level"}
    got = got.assign(level=got.level.astype(float)).fillna(text)
    expected = expected.assign(level=expected.level.astype(float)).fillna(text)
    merged = expected.merge(got, on=KEYS, how="outer", suffixes=("_want", "_got"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    assert missing.empty, f"rows differ:\n{missing[[*KEYS, '_merge']].head(20)}"
    families = merged.family_want.fillna("").astype(str), merged.family_got.fillna("").astype(str)
    assert (families[0] == families[1]).all(), "test families differ"
    for column in [*VALUES, "n"]:
        want = pd.to_numeric(merged[f"{column}_want"], errors="coerce").to_numpy(float)
        have = pd.to_numeric(merged[f"{column}_got"], errors="coerce").to_numpy(float)
        bad = ~np.isclose(have, want, rtol=1e-6, atol=1e-6, equal_nan=True)
        assert not bad.any(), f"{column} differs:\n{merged.loc[bad, [*KEYS, f'{column}_want', f'{column}_got']]}"


@pytest.mark.parametrize("fixture,name", [("built_store", "tiny"), ("mri_store", "tiny-mri")])
def test_stored_aggregates_equal_the_golden_file(request, fixture, name):
    store, key, _ = request.getfixturevalue(fixture)
    expected = pd.read_csv(golden_path(name), keep_default_na=False, na_values=[""])
    compare(golden_rows(store, key), expected)


def test_statistics_in_other_processes_store_the_same_aggregates(built_store, tiny_config, tmp_path, monkeypatch):
    """Beside a GPU cells' statistics run in other processes while the next cells are evaluated: the same aggregates."""
    _, _, cache = built_store
    monkeypatch.setattr(study, "statistics_beside", lambda device: True)
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))  # weights of the built study
    assert set(queries.done_cells(store, key)) == set(queries.done_cells(built_store[0], built_store[1]))
    compare(golden_rows(store, key), pd.read_csv(golden_path("tiny"), keep_default_na=False, na_values=[""]))
