"""Nothing is read from outside the allowed folders: "..", absolute paths, symlinked files and folders, NUL bytes.

Each refusal names the path as written and says nothing about outside files; a refused dataset
leaves the store exactly as it was.
"""

from __future__ import annotations

import hashlib
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from recon_core.cohorts import CohortError
from recon_core.cohorts.csv_xray import read_manifest
from recon_core.config import CohortConfig, CsvSourceConfig
from recon_core.config_loader import load_config
from recon_core.confinement import OutsideRootsError, confine, confine_all
from recon_core.runner import run_study
from recon_core.store import Store
from tests.conftest import ROOT, TINY


def image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(path)


@pytest.fixture
def places(tmp_path):
    """An allowed dataset folder and, beside it, an outside folder with a PNG and a 'secret' file."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    for i in range(8):
        image(root / "img" / f"p{i}.png")
    image(outside / "leak.png")
    (outside / "secret.txt").write_text("Sex,Age\nroot,0\n")
    return root, outside


def manifest(root, paths, name="labels.csv"):
    n = len(paths)
    pd.DataFrame({"Path": paths, "subject_id": [f"s{i}" for i in range(n)], "Sex": ["M", "F"] * (n // 2),
                  "Age": [30, 70] * (n // 2),
                  "Cardiomegaly": [0, 1] * (n // 2)}).to_csv(root / name, index=False)
    spec = CsvSourceConfig(csv_path=str(root / name), image_root=str(root), labels=("Cardiomegaly",))
    return CohortConfig(source="csv", image_size=32, csv=spec, age_band_edges=(60,))


def test_confine_refuses_every_way_out(places):
    root, outside = places
    (root / "linked.png").symlink_to(outside / "leak.png")
    (root / "linked_dir").symlink_to(outside)
    assert confine("img/p0.png", [root], base=root) == (root / "img" / "p0.png").resolve()
    for escape in ("../outside/leak.png", str(outside / "leak.png"), "linked.png", "linked_dir/leak.png",
                   "img/../../outside/leak.png"):
        with pytest.raises(OutsideRootsError, match="outside the folders Tandem may read"):
            confine(escape, [root], base=root)
    with pytest.raises(OutsideRootsError, match="NUL byte"):
        confine("img/p0.png\x00.yaml", [root], base=root)
    (root / "loop").symlink_to(root / "loop")  # a symlink loop: refused in the same words, not a crash
    (outside / "oloop").symlink_to(outside / "oloop")
    for loop in ("loop", str(outside / "oloop")):
        with pytest.raises(OutsideRootsError, match="outside the folders Tandem may read"):
            confine(loop, [root], base=root)


def test_a_refusal_reveals_nothing_about_outside_files(places):
    root, outside = places
    messages = []
    for probe in (outside / "secret.txt", outside / "no-such-file.txt"):
        with pytest.raises(OutsideRootsError) as caught:
            confine(probe, [root])
        messages.append(str(caught.value).replace(str(probe), "PATH"))
    assert messages[0] == messages[1]


def test_manifest_paths_leading_outside_are_refused_all_at_once(places):
    root, outside = places
    (root / "linked.png").symlink_to(outside / "leak.png")
    (root / "linked_dir").symlink_to(outside)
    traps = ["../outside/leak.png", str(outside / "leak.png"), "linked.png", "linked_dir/leak.png"]
    for trap in traps:  # one at a time
        config = manifest(root, [trap, *(f"img/p{i}.png" for i in range(7))])
        with pytest.raises(CohortError, match=r"1 image path\(s\) lead outside .*" + trap[-12:].replace(".", r"\.")):
            read_manifest(config, seed=0)
    config = manifest(root, [*traps, *(f"img/p{i}.png" for i in range(4))])
    with pytest.raises(CohortError, match=r"4 image path\(s\) lead outside"):
        read_manifest(config, seed=0)
    assert len(confine_all([f"img/p{i}.png" for i in range(8)], root)) == 8


def test_a_symlinked_manifest_csv_is_refused_unread(places):
    root, outside = places
    config = manifest(root, [f"img/p{i}.png" for i in range(8)])
    (root / "leak.csv").symlink_to(outside / "secret.txt")
    leak = CohortConfig(source="csv", image_size=32, age_band_edges=(60,),
                        csv=CsvSourceConfig(csv_path=str(root / "leak.csv"), image_root=str(root),
                                            labels=("Cardiomegaly",)))
    with pytest.raises(CohortError, match=r"manifest CSV .*leak\.csv: outside the folders") as caught:
        read_manifest(leak, seed=0)
    assert "root,0" not in str(caught.value) and "Sex" not in str(caught.value)
    assert len(read_manifest(config, seed=0)) == 8


def checksums(path) -> dict[str, str]:
    """Every table of a store, its rows sorted, hashed: equal before and after means nothing was written."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {t: hashlib.sha256(con.execute("SELECT * FROM " + t + " ORDER BY ALL").df()  # catalogue names
                                  .to_csv(index=False).encode()).hexdigest() for t in tables}


def test_one_image_listed_twice_by_two_spellings_is_refused(places):
    root, _ = places
    with pytest.raises(CohortError, match=r"one image listed twice in 2 row\(s\): row 2 'img/p0.png', row 3 "
                                          r"'./img/p0.png'"):
        read_manifest(manifest(root, ["img/p0.png", "./img/p0.png", *(f"img/p{i}.png" for i in range(2, 8))]), 0)


def test_a_dataset_refused_leaves_the_store_unchanged(built_store, places, tmp_path):
    store, _, cache = built_store
    root, _ = places
    copy = tmp_path / "good.duckdb"
    shutil.copy(store.path, copy)
    before = checksums(copy)
    manifest(root, ["../outside/leak.png", *(f"img/p{i}.png" for i in range(7))])
    config = load_config(TINY)
    bad = config.to_dict()
    bad["cohort"].update(source="csv", csv={"csv_path": str(root / "labels.csv"), "image_root": str(root),
                                            "labels": ["Cardiomegaly"]})
    from recon_core.config_loader import from_dict

    with pytest.raises(CohortError, match="lead outside"):
        run_study(from_dict(bad), Store(copy), cache / "checkpoints", torch.device("cpu"))
    assert checksums(copy) == before  # not even a 'failed' run row


def test_run_page_never_lists_or_reads_a_linked_csv_and_survives_a_nul_byte(places, tmp_path, monkeypatch):
    root, outside = places
    manifest(root, [f"img/p{i}.png" for i in range(8)])
    (root / "leak.csv").symlink_to(outside / "secret.txt")
    (root / "linked_dir").symlink_to(outside)
    (root / "loop.csv").symlink_to(root / "loop.csv")
    (root / "folder.csv").mkdir()
    shutil.copy(outside / "secret.txt", outside / "other.csv")
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(root))
    monkeypatch.setenv("TANDEM_STORE", str(tmp_path / "s.duckdb"))
    monkeypatch.setenv("TANDEM_CACHE", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/run.py").run()
    at.radio(key="run_source").set_value("dataset").run()
    at.text_input(key="run_dataset").set_value(str(root)).run()
    assert not at.exception
    assert at.selectbox(key="run_csv").options == ["labels.csv"]  # neither the link nor the linked folder's CSV
    assert "root" not in [o for box in at.selectbox for o in box.options]  # the outside header never shows
    at.button(key="run_decode").click().run()  # the slower pre-check: every image opened, counted
    assert not at.exception and any("All 8 images decode" in m.value for m in at.success)
    at.radio(key="run_source").set_value("path").run()
    at.text_input(key="run_path").set_value(str(root / "x\x00.yaml")).run()
    assert not at.exception and any("NUL byte" in e.value for e in at.error)
    messages = []
    for probe in (outside / "secret.txt", outside / "missing.yaml"):
        at.text_input(key="run_path").set_value(str(probe)).run()
        messages.append(next(e.value for e in at.error).replace(str(probe), "PATH"))
    assert messages[0] == messages[1]
