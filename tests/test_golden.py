"""Regression: the tiny X-ray and MRI studies store the same aggregates as the golden files made before the redesign.

Estimates, intervals, p- and q-values, correlations and thresholds are compared to 1e-6 (relative
and absolute): exact on the machine that made them, and tolerant only of the last bits a
different CPU's float kernels may move. A change of RNG stream, of training order or of a
statistic moves them by far more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core.config_loader import load_config
from recon_core.fairness import summarise_cell
from recon_core.runner import run_study, study
from recon_core.store import Store, queries
from tests.conftest import ROOT
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


@pytest.mark.parametrize("fixture,name", [("built_store", "tiny"), ("mri_store", "tiny-mri")])
def test_statistics_in_other_processes_store_the_same_aggregates(request, fixture, name, tmp_path, monkeypatch):
    """Beside a GPU cells' statistics run in other processes while the next cells are evaluated: the same aggregates."""
    built, built_key, cache = request.getfixturevalue(fixture)
    monkeypatch.setattr(study, "statistics_beside", lambda device: True)
    store = Store(tmp_path / "tandem.duckdb")
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    key = run_study(config, store, cache / "checkpoints", torch.device("cpu"))  # weights of the built study
    assert set(queries.done_cells(store, key)) == set(queries.done_cells(built, built_key))
    compare(golden_rows(store, key), pd.read_csv(golden_path(name), keep_default_na=False, na_values=[""]))


def test_failed_statistics_keep_every_other_cell_and_resume(built_store, tiny_config, tmp_path, monkeypatch):
    """One cell's statistics fail beside a GPU: the others still land, the run says why, a rerun completes it."""
    _, _, cache = built_store
    calls = []

    def failing_once(rows, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("statistics failed")
        return summarise_cell(rows, **kwargs)

    monkeypatch.setattr(study, "statistics_beside", lambda device: True)
    monkeypatch.setattr(study, "statistics_processes", lambda: ThreadPoolExecutor(2))  # the patch reaches threads
    monkeypatch.setattr(study, "summarise_cell", failing_once)
    store = Store(tmp_path / "tandem.duckdb")
    with pytest.raises(RuntimeError, match="statistics failed"):
        run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    every = set(queries.done_cells(built_store[0], built_store[1]))
    key = tiny_config.config_hash()
    landed = set(queries.done_cells(store, key))
    assert len(landed) >= 3 and len(landed) < len(every) and landed < every  # the failed cell is not done
    assert queries.runs(store).status.iloc[0] == "failed"
    monkeypatch.setattr(study, "summarise_cell", summarise_cell)
    run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    assert set(queries.done_cells(store, key)) == every
    compare(golden_rows(store, key), pd.read_csv(golden_path("tiny"), keep_default_na=False, na_values=[""]))


def test_statistics_processes_run_one_thread_each():
    """Launched like the CLI (nothing numerical imported up front), a statistics process runs BLAS on one thread."""
    code = ("from recon_core.runner.study import statistics_processes\n"
            "import threadpoolctl\n"
            "with statistics_processes() as pool:\n"
            "    print(max(lib['num_threads'] for lib in pool.submit(threadpoolctl.threadpool_info).result()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "1", out.stdout + out.stderr
