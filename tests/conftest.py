"""Shared fixtures: a tiny study built once per session (32 px, procedural anatomy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
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


@pytest.fixture(scope="session")
def both_modalities(built_store, mri_store, tmp_path_factory):
    """One store holding the tiny X-ray and MRI runs, with both runs' checkpoints."""
    folder = tmp_path_factory.mktemp("both")
    path = folder / "tandem.duckdb"
    shutil.copy(built_store[0].path, path)
    with duckdb.connect(str(path)) as con:
        con.execute("ATTACH ? AS mri (READ_ONLY)", [str(mri_store[0].path)])
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_catalog = 'mri' AND table_schema = 'main'").fetchall()]
        for table in tables:  # table names come from the catalogue, not from input
            con.execute("INSERT OR IGNORE INTO main." + table + " SELECT * FROM mri.main." + table)
    for _, _, cache in (built_store, mri_store):
        shutil.copytree(cache / "checkpoints", folder / "checkpoints", dirs_exist_ok=True)
    return Store(path), built_store[1], mri_store[1], folder


@pytest.fixture(scope="module")
def server(built_store):
    """The dashboard on the tiny store, one server per browser test module: its URL."""
    from tests.browser_support import start_server

    store, _, cache = built_store
    proc, url = start_server(store, cache)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never `playwright install`); fails where it is missing."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import LAUNCH_ARGS, OUT, require_chromium

    executable = require_chromium()
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(server, browser):
    """A page with downloads allowed, in its own browser context."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield context.new_page()
    context.close()
