"""Every benchmark runs at tiny size, so none can break unnoticed (their real-size runs are in README's notes)."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest

from benchmarks import (
    bootstrap_speed,
    browser_latency,
    cohort_generation,
    diffusion_steps,
    mitigation_validation,
    page_latency,
    ray_executor,
    study_stages,
    sweep_throughput,
    train_throughput,
    user_model_overhead,
    writer_wait,
)
from recon_core.config_loader import load_config
from tests.conftest import ROOT

TINY = str(ROOT / "configs" / "tiny.yaml")
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


def test_bootstrap_speed_agrees_with_scikit_learn():
    assert bootstrap_speed.main(["--images", "300", "--resamples", "20"]) < 1e-6


@pytest.mark.parametrize("config", SHIPPED, ids=lambda path: path.stem)
def test_sweep_throughput_times_every_reconstructor_of_every_shipped_config(config):
    """Each config's own reconstructors and task models at 32 px: a network one config alone uses cannot crash it."""
    rows = sweep_throughput.main(["--config", str(config), "--images", "1", "--image-size", "32", "--device", "cpu"])
    assert [name for name, *_ in rows] == list(load_config(config).reconstructors.names)
    assert all(math.isfinite(rate) and rate > 0 for _, *rates in rows for rate in rates), rows


@pytest.mark.parametrize(("config", "models"), [
    ("tiny.yaml", ["classifier", "unet", "gan", "diffusion", "unet+reweight", "unet+eodd", "unet+adversarial"]),
    ("tiny-mri.yaml", ["classifier", "segmenter", "unet", "unet+eodd"])])
def test_train_throughput_times_every_trained_model(config, models):
    rows = train_throughput.main(["--config", str(ROOT / "configs" / config), "--steps", "2", "--warmup", "1",
                                  "--images", "16", "--device", "cpu"])
    assert [name for name, *_ in rows] == models
    assert all(math.isfinite(rate) and rate > 0 for _, *rates in rows for rate in rates), rows


def test_diffusion_steps_on_the_tiny_study(built_store):
    _, _, cache = built_store
    rows = diffusion_steps.main(["--config", TINY, "--images", "4", "--steps", "2", "3", "--cache", str(cache),
                                 "--device", "cpu"])
    assert [steps for steps, *_ in rows] == [2, 3] and all(np.isfinite(psnr) for *_, psnr in rows)


def test_page_latency_on_the_tiny_store(built_store, monkeypatch):
    store, _, cache = built_store
    monkeypatch.setenv("TANDEM_CACHE", str(cache))
    monkeypatch.setenv("TANDEM_STORE", str(store.path))  # the benchmark sets it; restored after the test
    rows = page_latency.main(["--store", str(store.path), "--repeats", "1"])
    assert len(rows) == 8 and all(median > 0 for _, _, median, _ in rows)


@pytest.mark.skipif(bool(os.environ.get("TANDEM_SKIP_BROWSER")) and not os.environ.get("CI"),
                    reason="TANDEM_SKIP_BROWSER is set: the browser tests were skipped on request")
def test_browser_latency_times_every_interaction(built_store):
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium "
                    "(or set TANDEM_SKIP_BROWSER=1 to skip the browser tests knowingly)")
    store, _, cache = built_store
    rows = browser_latency.main(["--store", str(store.path), "--cache", str(cache), "--repeats", "1"])
    assert len(rows) == len(browser_latency.INTERACTIONS)
    assert all(math.isfinite(ms) and ms > 0 for _, *times in rows for ms in times), rows


def test_writer_wait_times_both_kinds_of_reader(built_store):
    store, _, _ = built_store
    rows = writer_wait.main(["--store", str(store.path), "--readers", "1", "--writes", "3", "--pause", "0.05",
                             "--rounds", "1"])
    assert [kind for kind, *_ in rows] == ["direct readers", "snapshot readers"]
    assert all(total >= 0 and worst >= median for _, median, worst, total in rows)


def test_cohort_generation_old_and_new_are_identical():
    rows = cohort_generation.main(["--xray", "24", "--mri", "12", "--mri-gpu", "12"])
    assert len(rows) == 4 and all(same for *_, same in rows), rows


def test_study_stages_times_every_stage(built_store, tmp_path):
    """The tiny study end to end (its weights copied from the built study): every stage named and timed."""
    _, _, cache = built_store
    shutil.copytree(cache / "checkpoints", tmp_path / "checkpoints")
    stages, total = study_stages.main(["--config", TINY, "--device", "cpu", "--cache", str(tmp_path)])
    names = [stage.name for stage in stages]
    assert "clean images" in names and "finalising the run" in names and any(" at " in n for n in names)
    assert 0 < sum(stage.seconds for stage in stages) <= total + 1e-6


def test_user_model_overhead_times_every_route():
    rates = user_model_overhead.main(["--config", TINY, "--images", "4", "--rounds", "1", "--device", "cpu"])
    assert list(rates) == ["built in", "torchscript", "bundle"]
    assert all(math.isfinite(rate) and rate > 0 for rate in rates.values()), rates


def test_ray_executor_benchmark_times_local_and_one_and_two_workers():
    """The smallest grid (clean road + none at one level) through the local executor and Ray with 1 and 2 workers."""
    rates = ray_executor.main(["--config", TINY, "--subjects", "240", "--levels", "300", "--reconstructors", "none"])
    assert set(rates) == {"local", "ray start (1) s", "ray 1 worker(s)", "ray start (2) s", "ray 2 worker(s)"}
    assert all(math.isfinite(value) and value > 0 for value in rates.values()), rates


def test_mitigation_validation_measures_every_variant_against_its_base(tmp_path):
    """One seed of the injected-bias study at 32 px: a row for the base and each variant, the variants' paired
    changes in PSNR and the nodule's AUROC finite, the base's own change absent, the CSVs written."""
    out = tmp_path / "mitigation.csv"
    table = mitigation_validation.main(["--config", TINY, "--seeds", "0", "--image-size", "32", "--images", "40",
                                        "--levels", "100", "--unet-steps", "5", "--mitigation-steps", "3",
                                        "--diagnostic-steps", "10", "--bootstrap", "100", "--out", str(out)])
    assert table.reconstructor.tolist() == [mitigation_validation.BASE, *mitigation_validation.VARIANTS]
    variants = table.iloc[1:]
    assert np.isfinite(variants[["d_psnr", "d_auroc", "d_eodd"]].to_numpy()).all(), variants
    assert table.iloc[0][["d_psnr", "d_auroc"]].isna().all()
    assert out.exists() and out.with_suffix(".pooled.csv").exists()
