"""Run-level finalisation: q-values and correlations once every cell is in; a run stopped before it finalises on resume.

These runs reuse the tiny study's checkpoints (same config, same weights keys), so nothing trains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import false_discovery_control

from recon_core.fairness import STATISTICS_VERSION
from recon_core.runner import study
from recon_core.store import Store, queries


def test_a_run_stopped_before_finalisation_is_finalised_when_resumed(built_store, tiny_config, tmp_path, monkeypatch):
    _, _, cache = built_store
    store = Store(tmp_path / "resume.duckdb")
    real = study.finalise_run

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "finalise_run", stopped)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    key = tiny_config.config_hash()
    assert queries.run_status(store, key) == "interrupted"
    assert (queries.cells(store, key).status == "done").all()  # every cell is in …
    assert queries.aggregates(store, key).q_value.isna().all() and queries.correlations(store, key).empty  # … not these
    assert queries.runs(store).statistics.iloc[0] == STATISTICS_VERSION  # its aggregates are current: not stale
    rows_before = store.query("SELECT count(*) FROM image_metrics").iloc[0, 0]

    cells_run = []
    monkeypatch.setattr(study, "finalise_run", real)
    monkeypatch.setattr(study.Sweep, "run_cell", lambda self, *a: cells_run.append(a))
    monkeypatch.setattr(study.Sweep, "resummarise", lambda self, cells: pytest.fail("re-summarised current cells"))
    study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    assert not cells_run  # nothing recomputed
    assert queries.run_status(store, key) == "done"
    assert store.query("SELECT count(*) FROM image_metrics").iloc[0, 0] == rows_before
    tests = queries.aggregates(store, key)
    tests = tests[tests.p_value.notna()]
    varied = tests[tests.ci_low != tests.ci_high]  # a statistic that never varied is in no family
    assert varied.q_value.notna().all() and len(queries.correlations(store, key)) >= 3


def test_q_values_are_benjamini_hochberg_within_each_stated_family_over_the_finished_run(built_store):
    """Every stored p-value belongs to one stated family; q is BH within it; the run records its statistics."""
    store, key, _ = built_store
    tests = queries.aggregates(store, key)
    tests = tests[tests.p_value.notna()]
    flat = tests.ci_low == tests.ci_high  # nothing varied: cannot reject, so in no family (Tarone)
    assert tests[~flat].family.notna().all() and tests[flat].family.isna().all()
    assert set(tests.family.dropna()) == {"primary", "secondary", "inherent", "task"}
    primary = tests[tests.family == "primary"]
    assert set(primary.metric) == {"tpr_diff_added"} and "mean" not in set(primary.label)
    for _, family in tests.groupby("family"):
        np.testing.assert_allclose(family.q_value, false_discovery_control(family.p_value.to_numpy(), method="bh"))
    assert queries.runs(store).statistics.iloc[0] == STATISTICS_VERSION


def test_a_finished_run_is_not_finalised_again(built_store, tiny_config, monkeypatch):
    store, _, cache = built_store
    monkeypatch.setattr(study, "finalise_run", lambda *a, **k: pytest.fail("finalised a finished run again"))
    study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))


def test_a_sweep_reads_each_cell_once_and_creates_the_schema_once(built_store, tiny_config, tmp_path, monkeypatch):
    """Store reads per cell: the cell's rows (one connection) and the run's bookkeeping, not every cell again."""
    _, _, cache = built_store
    store = Store(tmp_path / "count.duckdb")
    reads, statements = [], []
    original_queries, original_connect = Store.queries, Store.connect

    def counted_queries(self, *pairs):
        reads.append(len(pairs))
        return original_queries(self, *pairs)

    def counted_connect(self, read_only=False):
        if not read_only and not self._schema_ready:
            statements.append("schema")
        return original_connect(self, read_only)

    monkeypatch.setattr(Store, "queries", counted_queries)
    monkeypatch.setattr(Store, "connect", counted_connect)
    study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    n_cells = len(queries.cells(store, tiny_config.config_hash()))
    assert statements == ["schema"]  # the DDL ran on the first write only
    assert len(reads) <= n_cells + 6, f"{len(reads)} read connections for {n_cells} cells"


def test_a_failed_run_keeps_the_statistics_of_its_finished_cells_and_completes_on_resume(
        built_store, tiny_config, tmp_path, monkeypatch):
    _, _, cache = built_store
    store = Store(tmp_path / "failed.duckdb")
    real = study.Sweep.run_cell
    calls = []

    def failing(self, name, level):
        calls.append((name, level))
        if len(calls) == 6:
            raise RuntimeError("the GPU fell off the bus")
        return real(self, name, level)

    monkeypatch.setattr(study.Sweep, "run_cell", failing)
    with pytest.raises(RuntimeError):
        study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    key = tiny_config.config_hash()
    runs = queries.runs(store)
    assert runs.status.tolist() == ["failed"] and "the GPU fell off the bus" in runs.message.iloc[0]
    tests = queries.aggregates(store, key)
    tests = tests[tests.p_value.notna()]
    tests = tests[tests.ci_low != tests.ci_high]
    assert len(tests) and tests.q_value.notna().all()  # the five finished cells keep their q-values …
    corr = queries.correlations(store, key)
    assert corr[corr.scope == "pooled"].n_cells.eq(4).all()  # … and correlations over their 4 reconstructions
    monkeypatch.setattr(study.Sweep, "run_cell", real)
    study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    assert queries.run_status(store, key) == "done"
    corr = queries.correlations(store, key)
    assert corr[corr.scope == "pooled"].n_cells.eq(16).all()
    # eight reconstructors (three of them mitigation variants) at each of the two levels: a row per level and
    # their mean, for every pair
    pairs = corr.groupby(["x_metric", "y_metric", "attribute"]).scope.apply(set)
    assert all(scopes == {"pooled", "level 300", "level 3000", "within levels"} for scopes in pairs)
    assert corr[corr.scope.str.startswith("level")].n_cells.eq(8).all()


def test_a_run_summarised_by_older_statistics_is_recomputed_from_stored_rows(built_store, tiny_config, tmp_path,
                                                                              monkeypatch):
    """A stored run from before statistics version 2 (folded tests, no families) is re-summarised when run
    again: the same aggregates as a fresh build, families and q-values set, no cell evaluated again."""
    import shutil

    source, key, cache = built_store
    store = Store(shutil.copy(source.path, tmp_path / "old.duckdb"))
    fresh = queries.aggregates(store, key).sort_values(["reconstructor", "level", "metric", "label", "attribute",
                                                        "grp"]).reset_index(drop=True)
    with store.connect() as con:  # what an older version left: other numbers, no families, no version
        con.execute("UPDATE aggregates SET estimate = estimate + 1, family = NULL, q_value = NULL")
        con.execute("UPDATE runs SET statistics = NULL")
    monkeypatch.setattr(study.Sweep, "run_cell", lambda self, *a: pytest.fail(f"re-ran cell {a}"))
    study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    again = queries.aggregates(store, key).sort_values(["reconstructor", "level", "metric", "label", "attribute",
                                                        "grp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(again.drop(columns="config_hash"), fresh.drop(columns="config_hash"))
    assert queries.runs(store).statistics.iloc[0] == STATISTICS_VERSION


def test_a_run_that_fails_while_being_re_summarised_stays_stale(built_store, tiny_config, tmp_path, monkeypatch):
    """A failure part-way through re-summarising must not mark the run current (the failed run's best-effort
    finalisation included): the cells not yet recomputed would keep the older statistics for good."""
    import shutil

    source, key, cache = built_store
    store = Store(shutil.copy(source.path, tmp_path / "old.duckdb"))
    columns = ["reconstructor", "level", "metric", "label", "attribute", "grp"]
    fresh = queries.aggregates(store, key).sort_values(columns).reset_index(drop=True)
    with store.connect() as con:
        con.execute("UPDATE aggregates SET estimate = estimate + 1, family = NULL, q_value = NULL")
        con.execute("UPDATE runs SET statistics = NULL")
    real, calls = study.Sweep.summary, []

    def fails_on_the_third_cell(self, name, level):
        calls.append((name, level))
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(self, name, level)

    monkeypatch.setattr(study.Sweep, "summary", fails_on_the_third_cell)
    monkeypatch.setattr(study.Sweep, "run_cell", lambda self, *a: pytest.fail(f"re-ran cell {a}"))
    with pytest.raises(RuntimeError, match="disk full"):
        study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    assert pd.isna(queries.runs(store).statistics.iloc[0])  # still stale …
    monkeypatch.setattr(study.Sweep, "summary", real)
    study.run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))  # … so recomputed in full
    again = queries.aggregates(store, key).sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(again.drop(columns="config_hash"), fresh.drop(columns="config_hash"))
    assert queries.runs(store).statistics.iloc[0] == STATISTICS_VERSION
