"""The study grid on a real local Ray (`ray.init(num_cpus=2)`): the same aggregates as the local executor,
retries, failed cells that leave the others, and a killed driver that resumes without losing or doubling a row."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from recon_core.config_loader import load_config
from recon_core.progress import read_progress
from recon_core.runner import ray_executor, run_study
from recon_core.store import CLEAN, Store, queries
from tests import ray_faults
from tests.conftest import ROOT, TINY
from tests.golden import golden_rows
from tests.test_golden import compare

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of two CPUs for the module (it takes seconds to start)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def weights_of(built_store, tmp_path: Path) -> Path:
    """A fresh cache folder holding the built study's weights only (reconstructions are computed again)."""
    shutil.copytree(built_store[2] / "checkpoints", tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def stored_rows(store: Store, key: str) -> dict[tuple[str, float], int]:
    """Each stored cell's count of per-image rows."""
    counts = store.query("SELECT reconstructor, level, count(*) AS n FROM image_metrics WHERE config_hash = ? "
                         "GROUP BY ALL", [key])
    return {(r.reconstructor, float(r.level)): int(r.n) for r in counts.itertuples()}


def test_ray_executor_stores_the_local_executors_aggregates(built_store, local_ray, tmp_path):
    """Every cell evaluated on Ray workers, landed by the driver: the aggregates, p- and q-values are the local ones."""
    built, built_key, _ = built_store
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(load_config(TINY), store, weights_of(built_store, tmp_path), torch.device("cpu"),
                    cells=ray_executor.on_ray())
    assert key == built_key
    assert queries.done_cells(store, key) == queries.done_cells(built, built_key)
    assert queries.runs(store).status.tolist() == ["done"]
    compare(golden_rows(store, key), golden_rows(built, built_key))


def two_roads(tiny_config):
    """The tiny study with two untrained reconstructors only (none, tv): five cells, seconds to run."""
    return replace(tiny_config, reconstructors=replace(tiny_config.reconstructors, names=("none", "tv")))


def test_a_task_that_fails_once_is_retried_and_its_cell_lands(built_store, tiny_config, local_ray, tmp_path,
                                                              monkeypatch):
    """tv at 300 raises on its first attempt: Ray runs it again, the cell is done, every cell stored once."""
    monkeypatch.setattr(ray_executor, "cell_task", ray_faults.failing_once)
    store, checkpoints = Store(tmp_path / "tandem.duckdb"), weights_of(built_store, tmp_path)
    key = run_study(two_roads(tiny_config), store, checkpoints, torch.device("cpu"), cells=ray_executor.on_ray())
    assert ray_faults.attempts(checkpoints, "tv", 300.0) == 2
    assert ray_faults.attempts(checkpoints, "tv", 3000.0) == 1
    assert queries.run_status(store, key) == "done"
    assert len(queries.done_cells(store, key)) == 5
    assert stored_rows(store, key) == {(CLEAN, 0.0): 48, ("none", 300.0): 48, ("none", 3000.0): 48,
                                       ("tv", 300.0): 48, ("tv", 3000.0): 48}


def test_a_task_that_keeps_failing_fails_its_cell_only_and_resumes(built_store, tiny_config, local_ray, tmp_path,
                                                                   monkeypatch):
    """tv at 300 always raises: tried 1 + RETRIES times, then that cell is failed with the error, the others are
    done, the run is incomplete; run again with a working task, the cell is done and nothing is stored twice."""
    monkeypatch.setattr(ray_executor, "cell_task", ray_faults.failing_always)
    store, checkpoints, config = Store(tmp_path / "tandem.duckdb"), weights_of(built_store, tmp_path), two_roads(
        tiny_config)
    key = run_study(config, store, checkpoints, torch.device("cpu"), cells=ray_executor.on_ray())
    assert ray_faults.attempts(checkpoints, "tv", 300.0) == 1 + ray_executor.RETRIES
    cells = queries.cells(store, key).set_index(["reconstructor", "level"])
    assert cells.loc[("tv", 300.0), "status"] == "failed"
    assert "RuntimeError: broken for good (simulated)" in cells.loc[("tv", 300.0), "message"]
    assert len(queries.done_cells(store, key)) == 4
    assert ("tv", 300.0) not in stored_rows(store, key)
    run = queries.runs(store).set_index("config_hash").loc[key]
    assert run.status == "incomplete" and "1 cell(s) failed" in run.message
    monkeypatch.undo()
    assert run_study(config, store, checkpoints, torch.device("cpu"), cells=ray_executor.on_ray()) == key
    assert queries.run_status(store, key) == "done"
    assert ray_faults.attempts(checkpoints, "none", 300.0) == 1  # done cells are not run again
    assert set(stored_rows(store, key).values()) == {48} and len(stored_rows(store, key)) == 5


def test_a_killed_driver_resumes_with_no_row_lost_or_doubled(built_store, local_ray, tmp_path):
    """`sweep --executor ray` on the running cluster is killed (SIGKILL) once cells have landed; run again it
    evaluates only the cells not done, and the store holds every cell once, with the local executor's aggregates."""
    built, built_key, _ = built_store
    weights_of(built_store, tmp_path)
    progress_file, store_path = tmp_path / "progress.json", tmp_path / "tandem.duckdb"
    command = [sys.executable, "-m", "recon_core", "sweep", "--config", str(TINY), "--store", str(store_path),
               "--executor", "ray", "--ray-address", ray.get_runtime_context().gcs_address,
               "--progress-file", str(progress_file)]
    env = {**os.environ, "TANDEM_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline and driver.poll() is None:
        seen = read_progress(progress_file) or {}
        if seen.get("stage") == "cells on the Ray cluster" and seen["done"] >= 3:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the driver finished before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    store = Store(store_path)
    landed = queries.done_cells(store, built_key)
    assert 3 <= len(landed) < len(queries.done_cells(built, built_key))  # killed mid-sweep
    assert run_study(load_config(TINY), store, tmp_path / "checkpoints", torch.device("cpu"),
                     cells=ray_executor.on_ray()) == built_key
    assert queries.done_cells(store, built_key) == queries.done_cells(built, built_key)  # 0 lost
    assert set(stored_rows(store, built_key).values()) == {48}  # 0 doubled
    assert stored_rows(store, built_key) == stored_rows(built, built_key)
    compare(golden_rows(store, built_key), golden_rows(built, built_key))


def test_an_unreachable_ray_address_is_one_line_and_exit_2(tmp_path):
    """A cluster that does not answer: one line naming the address, status 2 (not Ray's minutes of retries)."""
    done = subprocess.run([sys.executable, "-m", "recon_core", "sweep", "--config", str(TINY), "--store",
                           str(tmp_path / "s.duckdb"), "--executor", "ray", "--ray-address", "127.0.0.1:1"],
                          cwd=ROOT, env={**os.environ, "TANDEM_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: cannot reach the Ray cluster at 127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s.duckdb").exists()  # said before the cohort loads or a model trains: no run stored
