"""A damaged store or checkpoint is a named error that says what to do; it never flips a finished run or loses rows."""

from __future__ import annotations

import shutil

import pytest
import torch
from streamlit.testing.v1 import AppTest

from recon_core.cli import main
from recon_core.models.checkpoints import CheckpointError
from recon_core.runner import run_study
from recon_core.store import Store, queries
from tests.conftest import ROOT, TINY
from tests.test_confinement import checksums


@pytest.fixture
def damaged_store(tmp_path):
    path = tmp_path / "tandem.duckdb"
    path.write_bytes(b"not a database " * 500)
    return path


def test_the_cli_names_a_damaged_store_and_leaves_it_as_it_was(damaged_store, capsys):
    before = damaged_store.read_bytes()
    for command in (["report", "--config", str(TINY)], ["sweep", "--config", str(TINY)]):
        assert main([*command, "--store", str(damaged_store)]) == 2
        err = capsys.readouterr().err
        assert "not a readable Tandem store" in err and "move it aside" in err and "Traceback" not in err
    assert damaged_store.read_bytes() == before


def test_the_dashboard_names_a_damaged_store(damaged_store, tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_STORE", str(damaged_store))
    monkeypatch.setenv("TANDEM_CACHE", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    for page in ("pages/home.py", "pages/overview.py", "pages/fairness.py", "pages/run.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert any("not a readable Tandem store" in e.value for e in at.error), page


def test_a_truncated_checkpoint_is_named_and_the_finished_run_stays_done(built_store, tiny_config, tmp_path):
    store, key, cache = built_store
    path = tmp_path / "tandem.duckdb"
    shutil.copy(store.path, path)
    shutil.copytree(cache / "checkpoints", tmp_path / "checkpoints")
    victim = sorted((tmp_path / "checkpoints").glob("classifier*"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    before = {t: c for t, c in checksums(path).items() if t != "runs"}
    with pytest.raises(CheckpointError, match=r"unreadable checkpoint .*delete the file to train that model again"):
        run_study(tiny_config, Store(path), tmp_path / "checkpoints", torch.device("cpu"))
    runs = queries.runs(Store(path))
    assert runs.set_index("config_hash").status[key] == "done"
    assert {t: c for t, c in checksums(path).items() if t != "runs"} == before


def test_a_damaged_block_inside_a_store_is_named_not_a_traceback(built_store, tmp_path, capsys):
    store, _, _ = built_store
    path = tmp_path / "tandem.duckdb"
    shutil.copy(store.path, path)
    with open(path, "r+b") as handle:  # a bad block: DuckDB's checksum no longer matches
        handle.seek(4096)
        handle.write(bytes(range(256)) * 16)
    before = path.read_bytes()
    assert main(["report", "--config", str(TINY), "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a readable Tandem store" in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_an_image_that_fails_to_decode_at_load_leaves_no_run_row(built_store, tmp_path):
    from recon_core.cohorts import CohortError
    from recon_core.config_loader import from_dict, load_config
    from tests.test_confinement import image, manifest

    store, _, _ = built_store
    path = tmp_path / "good.duckdb"
    shutil.copy(store.path, path)
    before = checksums(path)
    root = tmp_path / "data"
    for i in range(96):
        image(root / "img" / f"p{i}.png")
    manifest(root, [f"img/p{i}.png" for i in range(96)])
    (root / "img" / "p5.png").write_bytes(b"not an image")  # passes the manifest check; fails when decoded
    data = load_config(TINY).to_dict()
    data["cohort"].update(source="csv", csv={"csv_path": str(root / "labels.csv"), "image_root": str(root),
                                             "labels": ["Cardiomegaly"]})
    with pytest.raises(CohortError, match=r"p5\.png: unreadable image"):
        run_study(from_dict(data), Store(path), tmp_path / "checkpoints", torch.device("cpu"))
    assert checksums(path) == before  # the new run's row is gone again


def test_a_checksum_error_in_a_block_is_damage_and_a_lock_is_not():
    import duckdb

    from recon_core.store.database import _damage

    block = duckdb.Error("Corrupt database file: computed checksum 1 does not match stored checksum 2 in block at "
                         "location 2895872")
    assert _damage(block)  # 'block' is not 'lock': once it was read as a busy store and raised raw
    assert not _damage(duckdb.IOException('Could not set lock on file "s.duckdb": Conflicting lock is held'))
    assert not _damage(duckdb.BinderException("a mistake in our own SQL"))
