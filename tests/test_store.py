"""Store: idempotent writes, parameterised reads, two processes sharing one file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pandas as pd

from recon_core.config import StudyConfig
from recon_core.modalities import get_modality
from recon_core.store import Store, queries, writes

XRAY = get_modality(StudyConfig().modality)


def cell_frames(n=5):
    metrics = pd.DataFrame({"modality": "xray", "image_id": [f"i{i}" for i in range(n)],
                            "subject_id": [f"s{i}" for i in range(n)], "sex": ["M", "F"] * (n // 2) + ["M"] * (n % 2),
                            "age": 50.0, "age_band": "<60", "psnr": 30.0, "ssim": 0.9, "nmse": 0.01})
    scores = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "label": "a", "score": 0.5, "target": 1.0})
    return metrics, scores


def test_writes_are_idempotent(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    config = StudyConfig()
    key = writes.register_run(store, config, XRAY.describe(config))
    metrics, scores = cell_frames()
    example = {("i0", "reconstructed"): np.eye(4, dtype=np.float32)}
    for _ in range(2):
        writes.register_run(store, config, XRAY.describe(config))
        writes.write_cell_rows(store, key, "none", 100.0, metrics, scores, example)
        writes.write_thresholds(store, key, {"a": 0.5})
    counts = store.query("SELECT (SELECT count(*) FROM image_metrics), (SELECT count(*) FROM image_scores), "
                         "(SELECT count(*) FROM runs), (SELECT count(*) FROM examples)").iloc[0].tolist()
    assert counts == [5, 5, 1, 1]
    pixels = queries.examples(store, key, "none", 100.0).pixels.iloc[0]
    np.testing.assert_array_equal(pixels, np.eye(4))
    wide = queries.image_rows(store, key, "none", 100.0)
    assert list(wide.columns[-2:]) == ["score:a", "target:a"] and len(wide) == 5


def test_reads_of_a_missing_store_are_empty(tmp_path):
    store = Store(tmp_path / "absent.duckdb")
    assert queries.runs(store).empty
    assert queries.aggregates(store, "x").empty
    assert not store.exists()


def test_quoted_values_are_parameters_not_sql(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    key = writes.register_run(store, StudyConfig(name="it's; DROP TABLE runs; --"), XRAY.describe(StudyConfig()))
    assert queries.runs(store).name.tolist() == ["it's; DROP TABLE runs; --"]
    assert queries.cells(store, "' OR 1=1 --").empty and key


WRITER = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from recon_core.config import StudyConfig
    from recon_core.modalities import get_modality
    from recon_core.store import Store, writes
    store = Store(sys.argv[1])
    key = writes.register_run(store, StudyConfig(), get_modality(StudyConfig().modality).describe(StudyConfig()))
    for cell in range(40):
        metrics = pd.DataFrame({"modality": "xray", "image_id": [f"i{i}" for i in range(50)],
                                "subject_id": "s", "sex": "M", "age": 50.0, "age_band": "<60",
                                "psnr": 30.0, "ssim": 0.9, "nmse": 0.01})
        scores = pd.DataFrame({"image_id": [f"i{i}" for i in range(50)], "label": "a", "score": 0.5, "target": 1.0})
        writes.write_cell_rows(store, key, "none", float(cell + 1), metrics, scores, {})
        time.sleep(0.05)  # about two seconds of writing: long enough to interleave with the reader
    print("writer done")
""")


def test_dashboard_reads_while_a_sweep_writes(tmp_path):
    """One process writes cells while this one reads: neither fails on DuckDB's file lock."""
    path = tmp_path / "shared.duckdb"
    Store(path).query("SELECT 1")  # nothing yet
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    store = Store(path, timeout=30)
    seen = []
    deadline = time.monotonic() + 60
    while writer.poll() is None and time.monotonic() < deadline:
        if store.exists():
            df = store.query("SELECT count(*) AS n FROM image_metrics")
            if df is not None:
                seen.append(int(df.n.iloc[0]))
        time.sleep(0.01)
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0 and "writer done" in out
    assert len(seen) >= 3, "the reader never got in while the writer worked"
    assert seen == sorted(seen)  # every read saw a consistent, growing store
    # The writer, retrying while this process held read locks, got every cell in.
    assert int(store.query("SELECT count(*) AS n FROM image_metrics").n.iloc[0]) == 40 * 50


def test_a_store_written_before_the_volume_columns_still_reads(tmp_path):
    """Stores from before `mse`/`signal` existed: rows read with those columns empty, never an error."""
    store = Store(tmp_path / "old.duckdb")
    key = writes.register_run(store, StudyConfig(), XRAY.describe(StudyConfig()))
    metrics, scores = cell_frames()
    writes.write_cell_rows(store, key, "none", 100.0, metrics, scores, {})
    with store.connect() as con:
        for column in ("mse", "signal"):  # names, not values: no parameter can stand for them
            con.execute("ALTER TABLE image_metrics DROP COLUMN " + column)
    rows = queries.image_rows(store, key, "none", 100.0)
    assert len(rows) == 5 and rows.mse.isna().all() and rows.signal.isna().all()
    assert rows.psnr.notna().all()


def test_a_store_from_before_statistics_v2_reads_and_says_its_statistics_are_outdated(tmp_path):
    """No family, dropped or statistics column (dropped here by hand): aggregates read with them empty, and the
    run view says its statistics are outdated, so the pages warn instead of failing."""
    from recon_core import results

    store = Store(tmp_path / "old.duckdb")
    key = writes.register_run(store, StudyConfig(), XRAY.describe(StudyConfig()))
    summary = pd.DataFrame({"metric": ["eo_gap_added"], "label": ["mean"], "attribute": ["sex"], "grp": [""],
                            "estimate": [0.1], "ci_low": [0.0], "ci_high": [0.2], "n": [50], "n_pos": [None],
                            "p_value": [0.03], "dropped": [0.0]})
    writes.finish_cell(store, key, "none", 100.0, summary, 1.0, 50.0)
    with store.connect() as con:
        con.execute("ALTER TABLE aggregates DROP COLUMN family")
        con.execute("ALTER TABLE aggregates DROP COLUMN dropped")
        con.execute("ALTER TABLE runs DROP COLUMN statistics")
    agg = queries.aggregates(store, key)
    assert len(agg) == 1 and agg.family.isna().all() and agg.dropped.isna().all()
    run = results.run_view(store, key)
    assert run.statistics == 0 and run.statistics_outdated


def test_a_store_file_removed_while_its_object_lives_is_made_again(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    writes.register_run(store, StudyConfig(), XRAY.describe(StudyConfig()))
    for path in tmp_path.glob("s.duckdb*"):
        path.unlink()
    writes.register_run(store, StudyConfig(), XRAY.describe(StudyConfig()))  # the schema is made again
    assert len(queries.runs(store)) == 1


def correlation_rows(scopes):
    return pd.DataFrame({"scope": scopes, "x_metric": "psnr", "y_metric": "auroc", "attribute": "all",
                         "estimate": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n_cells": 4})


def test_correlations_keep_their_scope_and_are_replaced_whole(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    scopes = ["pooled", "level 300", "level 3000", "within levels"]
    writes.replace_correlations(store, "k", correlation_rows(scopes))  # one pair in four scopes: four keys
    assert sorted(queries.correlations(store, "k").scope) == sorted(scopes)
    writes.replace_correlations(store, "k", correlation_rows(["pooled"]))
    assert queries.correlations(store, "k").scope.tolist() == ["pooled"]


def test_a_store_written_before_correlation_scopes_keeps_its_rows_as_pooled(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # the correlations table as stores wrote it before scopes
        con.execute("""CREATE TABLE correlations (
            config_hash VARCHAR, x_metric VARCHAR, y_metric VARCHAR, attribute VARCHAR, estimate DOUBLE,
            ci_low DOUBLE, ci_high DOUBLE, n_cells INTEGER,
            PRIMARY KEY (config_hash, x_metric, y_metric, attribute))""")
        con.execute("""INSERT INTO correlations VALUES ('k', 'psnr', 'auroc', 'all', 0.7, 0.5, 0.9, 10),
                                                      ('k', 'psnr_gap', 'eo_gap', 'sex', 0.1, -0.4, 0.6, 10)""")
    store = Store(path)
    before = queries.correlations(store, "k")  # a reader does not migrate: the rows read as pooled
    assert before.scope.tolist() == ["pooled", "pooled"] and before.estimate.tolist() == [0.7, 0.1]

    writes.replace_correlations(store, "other", correlation_rows(["pooled", "within levels"]))  # first write
    after = queries.correlations(store, "k")
    assert after.drop(columns="scope").equals(before.drop(columns="scope")) and set(after.scope) == {"pooled"}
    assert len(queries.correlations(store, "other")) == 2  # scope is part of the key now
    assert store.query("SELECT count(*) AS n FROM correlations").n.iloc[0] == 4
    writes.replace_correlations(Store(path), "k", correlation_rows(["pooled", "level 1"]))  # reopened: no new copy
    assert queries.correlations(store, "k").scope.tolist() == ["level 1", "pooled"]


def test_calibration_sums_carry_the_runs_extra_group_columns(tmp_path):
    """A run on a dataset with its own group column (e.g. a site) has it in the sidebar: the calibration curve
    must group by it as the per-image rows do, not fail for a missing column."""
    from recon_core import results

    store = Store(tmp_path / "s.duckdb")
    config = StudyConfig()
    key = writes.register_run(store, config, XRAY.describe(config))
    metrics, scores = cell_frames(4)
    sums = pd.DataFrame({"image_id": np.repeat([f"i{i}" for i in range(4)], 2), "bin": [0, 1] * 4,
                         "pixels": 10.0, "sum_std": 1.0, "sum_sq_error": 0.5})
    writes.write_cell_rows(store, key, "diffusion", 100.0, metrics, scores, {}, None, sums)
    writes.write_attributes(store, key, pd.DataFrame({"image_id": [f"i{i}" for i in range(4)], "attribute": "site",
                                                      "value": ["A", "B", "A", "B"]}))
    read = queries.calibration_sums(store, key, "diffusion", 100.0)
    assert read.site.tolist() == ["A", "A", "B", "B", "A", "A", "B", "B"]
    curve = results.calibration_curve(store, key, "diffusion", 100.0, ["site"])
    assert set(curve.grp) == {"all", "A", "B"}
    assert curve[curve.grp == "A"].pixels.tolist() == [20.0, 20.0]
    assert queries.calibration_sums(store, key, "diffusion", 5.0).empty
