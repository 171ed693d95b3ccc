"""Shared fixtures: a tiny study built once per session (32 px, procedural anatomy)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recon_core.config import StudyConfig
from recon_core.config_loader import load_config
from recon_core.runner import run_study
from recon_core.store import Store

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_config() -> StudyConfig:
    return load_config(TINY)


@pytest.fixture(scope="session")
def built_store(tmp_path_factory, tiny_config) -> tuple[Store, str, Path]:
    """The whole slice run once on the tiny cohort: (store, config hash, cache folder)."""
    cache = tmp_path_factory.mktemp("cache")
    store = Store(cache / "tandem.duckdb")
    key = run_study(tiny_config, store, cache / "checkpoints", torch.device("cpu"))
    return store, key, cache


@pytest.fixture(scope="session")
def mri_store(tmp_path_factory) -> tuple[Store, str, Path]:
    """The tiny MRI study (48 px procedural heads, 4 slices per patient) run once: (store, key, cache)."""
    cache = tmp_path_factory.mktemp("mri-cache")
    store = Store(cache / "tandem.duckdb")
    key = run_study(load_config(ROOT / "configs" / "tiny-mri.yaml"), store, cache / "checkpoints",
                    torch.device("cpu"))
    return store, key, cache
