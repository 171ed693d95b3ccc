"""The study grid on a real local Ray (`ray.init(num_cpus=2)`): the same aggregates as the local executor,
retries, failed cells that leave the others, and a killed driver that resumes without losing or doubling a row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from recon_core.config_loader import load_config
from recon_core.runner import run_study
from recon_core.store import Store, queries
from tests.conftest import TINY
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


def test_ray_executor_stores_the_local_executors_aggregates(built_store, local_ray, tmp_path):
    """Every cell evaluated on Ray workers, landed by the driver: the aggregates, p- and q-values are the local ones."""
    built, built_key, _ = built_store
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(load_config(TINY), store, weights_of(built_store, tmp_path), torch.device("cpu"),
                    executor="ray")
    assert key == built_key
    assert queries.done_cells(store, key) == queries.done_cells(built, built_key)
    assert queries.runs(store).status.tolist() == ["done"]
    compare(golden_rows(store, key), golden_rows(built, built_key))
