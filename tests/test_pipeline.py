"""The whole X-ray slice on a tiny cohort: train → sweep → store → report; resume adds nothing."""

from __future__ import annotations

import numpy as np
import torch

from recon_core.cli import main
from recon_core.runner import run_study
from recon_core.store import CLEAN, queries


def table_counts(store):
    return store.query("SELECT (SELECT count(*) FROM image_metrics), (SELECT count(*) FROM image_scores), "
                       "(SELECT count(*) FROM aggregates), (SELECT count(*) FROM cells)").iloc[0].tolist()


def test_every_cell_lands_with_aggregates(built_store, tiny_config):
    store, key, _ = built_store
    cells = queries.cells(store, key)
    expected = 1 + len(tiny_config.reconstructors.names) * len(tiny_config.physics.levels)
    assert len(cells) == expected and (cells.status == "done").all()
    runs = queries.runs(store)
    assert runs.status.tolist() == ["done"]
    agg = queries.aggregates(store, key)
    n_test = int(cells.n_images.iloc[0])
    psnr = agg[(agg.metric == "psnr") & (agg.attribute == "all")]
    assert set(psnr.reconstructor) == set(tiny_config.reconstructors.names)
    none = psnr[psnr.reconstructor == "none"].sort_values("level")
    assert none.estimate.is_monotonic_increasing  # PSNR falls as dose falls
    auroc = agg[(agg.metric == "auroc") & (agg.label == "mean") & (agg.attribute == "all")]
    assert len(auroc) == expected and auroc.estimate.between(0, 1).all()
    assert (agg[agg.attribute == "all"].n == n_test).all()
    added = agg[(agg.metric == "eo_gap_added") & (agg.attribute == "sex") & (agg.label == "mean")]
    assert len(added) == expected - 1  # every reconstructed cell, never the clean road
    assert set(queries.thresholds(store, key)) == {"cardiomegaly", "effusion", "nodule"}


def test_per_image_rows_carry_demographics_and_config_hash(built_store):
    store, key, _ = built_store
    rows = queries.image_rows(store, key, "none", 300.0)
    assert set(rows.sex) == {"M", "F"} and rows.psnr.notna().all()
    clean = queries.image_rows(store, key, CLEAN, 0.0)
    assert clean.psnr.isna().all() and len(clean) == len(rows)
    hashes = store.query("SELECT DISTINCT config_hash FROM image_metrics").config_hash.tolist()
    assert hashes == [key]


def test_example_images_are_stored(built_store, tiny_config):
    store, key, _ = built_store
    ex = queries.examples(store, key, "unet", 300.0)
    assert set(ex.kind) == {"degraded", "reconstructed"}
    assert ex.image_id.nunique() == tiny_config.evaluation.n_examples
    assert ex.pixels.iloc[0].shape == (32, 32)


def test_rerun_resumes_and_adds_no_rows(built_store, tiny_config):
    store, key, cache = built_store
    before = table_counts(store)
    assert run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu")) == key
    assert table_counts(store) == before


def test_report_cli(built_store, capsys):
    store, key, _ = built_store
    assert main(["report", "--store", str(store.path), "--run", key]) == 0
    out = capsys.readouterr().out
    assert "mean AUROC" in out and "unet" in out and "clean" in out


def test_bad_input_is_a_clear_error_and_loses_nothing(built_store, tmp_path, capsys):
    store, _, _ = built_store
    before = table_counts(store)
    bad = tmp_path / "bad.yaml"
    bad.write_text("physics: {levels: [1000, 0]}\n")
    assert main(["sweep", "--config", str(bad), "--store", str(store.path)]) == 2
    assert "dose level 0" in capsys.readouterr().err
    bad.write_text("reconstructors: {names: [none, wavelet_magic]}\n")
    assert main(["sweep", "--config", str(bad), "--store", str(store.path)]) == 2
    assert "unknown reconstructor 'wavelet_magic'" in capsys.readouterr().err
    missing_csv = tmp_path / "csv.yaml"
    missing_csv.write_text(f"cohort: {{source: csv, csv: {{csv_path: {tmp_path}/none.csv, image_root: {tmp_path}}}}}\n")
    assert main(["sweep", "--config", str(missing_csv), "--store", str(store.path)]) == 2
    assert "none.csv: CSV file not found" in capsys.readouterr().err
    assert table_counts(store) == before
    assert set(queries.runs(store).status) == {"done"}  # bad data is refused before a run row is written


def test_clean_road_has_no_image_quality_but_scores(built_store):
    store, key, _ = built_store
    rows = queries.image_rows(store, key, CLEAN, 0.0)
    scores = rows[[c for c in rows.columns if c.startswith("score:")]].to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


def test_added_bias_tests_carry_p_and_q_values(built_store):
    store, key, _ = built_store
    agg = queries.aggregates(store, key)
    added = agg[agg.metric.str.endswith("_added") & agg.p_value.notna()]
    assert len(added) > 100
    varied = added[added.ci_low != added.ci_high]  # a statistic that never varied is in no family (Tarone)
    assert varied.q_value.notna().all() and (varied.q_value >= varied.p_value - 1e-12).all()
    assert added[added.ci_low == added.ci_high].q_value.isna().all()
    assert set(agg[agg.metric == "tpr"].attribute) == {"all", "sex", "age_band", "sex×age_band"}
