"""Reconstructions made elsewhere: export the degraded inputs, reconstruct outside Tandem, import, sweep.

The export → external median filter → import route must store the same metrics as the same
filter run in-process (an entry point, tests/user_models/median.py); every broken contract is
an error naming the file; the folder's files are in the config hash.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from recon_core.cli import main
from recon_core.config import ConfigError, UserReconstructorConfig
from recon_core.config_loader import from_dict, load_config
from recon_core.models.image_files import PNG_FULL_SCALE, read_image
from recon_core.models.user_models import UserModelError, resample
from recon_core.reconstructors.imported import ImportedReconstructions
from recon_core.runner import prepare, run_study
from recon_core.runner.exchange import check_reconstructions, export_degraded, sweep_inputs, with_imported
from recon_core.store import Store, queries
from tests.conftest import ROOT
from tests.user_models.median import median

STUDY = {
    "name": "tiny-imported", "modality": "xray", "seed": 1,
    "cohort": {"source": "synthetic", "anatomy": "procedural", "n_subjects": 240, "image_size": 32},
    "physics": {"levels": [3000, 300]},
    "reconstructors": {"names": ["median_ep"], "user": [
        {"name": "median_ep", "source": "entry_point", "entry_point": "tests.user_models.median:factory"}]},
    "diagnostic": {"steps": 10, "batch_size": 16},
    "evaluation": {"n_bootstrap": 100, "n_examples": 2},
}
"""The tiny X-ray study with the median filter run in-process as the user's entry point."""


def filter_outside(exported: Path, into: Path) -> None:
    """What a user does elsewhere: every exported input median-filtered with NumPy/SciPy, saved as NPY."""
    for level in json.loads((exported / "manifest.json").read_text())["levels"]:
        (into / level).mkdir(parents=True)
        for file in (exported / level).glob("*.npy"):
            np.save(into / level / file.name, median(np.load(file)).astype(np.float32))


def import_cli(config: Path, folder: Path, store: Path, name: str = "median_files") -> tuple[int, str, str]:
    """`python -m recon_core import-reconstructions`: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["import-reconstructions", "--config", str(config), "--from", str(folder), "--name", name,
                     "--store", str(store), "--device", "cpu"])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study exported, filtered outside Tandem and imported once: paths, the run's key and what was printed."""
    root = tmp_path_factory.mktemp("imported")
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    exported, recons = root / "exported", root / "recons"
    export_degraded(load_config(config), exported)
    filter_outside(exported, recons)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TANDEM_CACHE", str(root / "cache"))
        code, out, err = import_cli(config, recons, root / "tandem.duckdb")
    assert code == 0, err
    key = prepare(with_imported(load_config(config), "median_files", recons)).config_hash()
    return SimpleNamespace(root=root, config=config, exported=exported, recons=recons, store=root / "tandem.duckdb",
                           key=key, out=out)


def broken_copy(study, tmp_path: Path) -> Path:
    """A copy of the good reconstructions to damage."""
    return Path(shutil.copytree(study.recons, tmp_path / "recons"))


def problems_of(study, folder: Path) -> str:
    """check_reconstructions' message for `folder` (it must refuse it)."""
    with pytest.raises(UserModelError) as caught:
        check_reconstructions(with_imported(load_config(study.config), "bad", folder), "bad")
    return str(caught.value)


def test_imported_files_store_the_metrics_of_the_same_filter_run_in_process(study):
    store = Store(study.store)
    run = queries.runs(store).set_index("config_hash").loc[study.key]
    assert run.status == "done"
    for level in STUDY["physics"]["levels"]:
        imported = queries.image_rows(store, study.key, "median_files", float(level))
        in_process = queries.image_rows(store, study.key, "median_ep", float(level))
        assert len(imported) == 48 and list(imported.image_id) == list(in_process.image_id)
        numbers = [c for c in imported.columns if imported[c].dtype.kind == "f" and c != "age"]
        assert {"psnr", "ssim", "nmse", "score:effusion", "score:nodule"} <= set(numbers)
        assert np.isfinite(imported[numbers].to_numpy()).all()
        np.testing.assert_allclose(imported[numbers].to_numpy(), in_process[numbers].to_numpy(), atol=1e-6, rtol=0)


def test_import_prints_the_config_snippet_and_the_report(study):
    snippet = study.out.split("add to it:\n", 1)[1].split("reconstructor ", 1)[0]
    declared = yaml.safe_load(snippet)["reconstructors"]
    assert declared["names"] == ["median_ep", "median_files"]
    assert declared["user"] == [{"name": "median_files", "source": "files", "path": str(study.recons.resolve())}]
    assert "median_files" in study.out.rsplit("reconstructor ", 1)[1]


def test_importing_the_same_files_again_resumes_and_stores_no_duplicates(study):
    store = Store(study.store)
    count = "SELECT count(*) FROM image_metrics WHERE config_hash = ?"
    before = int(store.query(count, [study.key]).iloc[0, 0])
    code, out, err = import_cli(study.config, study.recons, study.store)
    assert code == 0, err
    assert study.key in out and int(store.query(count, [study.key]).iloc[0, 0]) == before == 48 * 5


def test_a_changed_file_is_a_new_config_hash(study, tmp_path):
    folder = broken_copy(study, tmp_path)
    config = load_config(study.config)
    first = prepare(with_imported(config, "median_files", folder)).config_hash()
    assert prepare(with_imported(config, "median_files", folder)).config_hash() == first
    one = next((folder / "300").glob("*.npy"))
    np.save(one, np.load(one) * 0.5)
    assert prepare(with_imported(config, "median_files", folder)).config_hash() != first


def _remove(file: Path) -> None:
    file.unlink()


@pytest.mark.parametrize(("damage", "expected"), [
    (_remove, r"level 300: 1 of 48 images have no file in .*300 \({id}\)"),
    (lambda f: np.save(f, np.zeros((16, 16), np.float32)), r"{id}.npy holds an array of shape \[16, 16\], "
                                                             r"expected \[32, 32\]"),
    (lambda f: np.save(f, np.where(np.eye(32) > 0, np.nan, np.load(f))), r"{id}.npy: returned NaN or Inf"),
    (lambda f: np.save(f, np.load(f) + 2.0), r"{id}.npy: returned values in \[.*\], outside its declared "
                                             r"value_range \[0, 1\]"),
    (lambda f: f.write_bytes(b"not an array"), r"{id}.npy: not a readable NPY image"),
    (lambda f: shutil.copy(f, f.with_suffix(".png")), r"2 files for one image"),
], ids=["missing id", "wrong shape", "NaN", "out of range", "damaged file", "two files"])
def test_each_broken_contract_is_named_with_its_file(study, tmp_path, damage, expected):
    folder = broken_copy(study, tmp_path)
    file = sorted((folder / "300").glob("*.npy"))[3]
    damage(file)
    message = problems_of(study, folder)
    assert message.startswith("reconstructor 'bad': 1 problem(s) with the reconstructions in ")
    assert re.search(expected.format(id=file.stem), message), message


def test_every_problem_comes_at_once_capped(study, tmp_path):
    folder = broken_copy(study, tmp_path)
    shutil.rmtree(folder / "3000")
    for file in sorted((folder / "300").glob("*.npy"))[:12]:
        np.save(file, np.full((32, 32), np.inf, np.float32))
    message = problems_of(study, folder)
    assert "13 problem(s)" in message and "level 3000: no folder" in message and "and 3 more" in message


def test_a_manifest_from_other_inputs_is_refused(study, tmp_path):
    folder = broken_copy(study, tmp_path)
    manifest = json.loads((study.exported / "manifest.json").read_text())
    shutil.copy(study.exported / "manifest.json", folder / "manifest.json")
    check_reconstructions(with_imported(load_config(study.config), "ok", folder), "ok")  # the same inputs: fine
    (folder / "manifest.json").write_text(json.dumps(manifest | {"inputs_hash": "0" * 16}))
    assert "made from inputs 0000000000000000" in problems_of(study, folder)


def test_the_sweep_names_a_missing_id_its_level_and_folder(study):
    config = with_imported(load_config(study.config), "median_files", study.recons)
    recon = ImportedReconstructions(config, torch.device("cpu"), config.reconstructors.declared("median_files"))
    data, physics = sweep_inputs(config)
    ids = data.rows.image_id.tolist()[:2]
    degraded = torch.zeros(2, 1, 32, 32)
    output = recon.reconstruct(degraded, physics, 300.0, None, ids)
    expected = np.stack([np.load(study.recons / "300" / f"{i}.npy") for i in ids])[:, None]
    np.testing.assert_array_equal(output.numpy(), np.clip(expected, 0, 1))
    with pytest.raises(UserModelError, match=r"reconstructor 'median_files' at level 300: no reconstruction of "
                                             r"images not-an-id in .*recons/300 \(expected "
                                             r".*recons/300/not-an-id\.npy, \.nii\.gz or \.png\)"):
        recon.reconstruct(degraded, physics, 300.0, None, [ids[0], "not-an-id"])


def test_the_cli_refuses_a_broken_folder_in_one_line_and_stores_nothing(study, tmp_path):
    folder = broken_copy(study, tmp_path)
    np.save(next((folder / "3000").glob("*.npy")), np.zeros((8, 8), np.float32))
    runs = len(queries.runs(Store(study.store)))
    code, _, err = import_cli(study.config, folder, study.store, name="broken")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: reconstructor 'broken': 1 problem(s)")
    assert len(queries.runs(Store(study.store))) == runs
    code, _, err = import_cli(study.config, folder, study.store, name="median_ep")
    assert code == 2 and "already declares a reconstructor 'median_ep'" in err


def test_png_keeps_the_inputs_within_its_quantisation_and_nifti_exactly(study, tmp_path):
    config = load_config(study.config)
    for fmt in ("png", "nifti"):
        manifest = export_degraded(config, tmp_path / fmt, fmt)
        assert manifest["format"] == fmt and manifest["inputs_hash"] == json.loads(
            (study.exported / "manifest.json").read_text())["inputs_hash"]
    for exact in sorted((study.exported / "300").glob("*.npy"))[:10]:
        values = np.load(exact)
        png, fraction = read_image(tmp_path / "png" / "300" / f"{exact.stem}.png")
        assert fraction and png.shape == (32, 32)
        assert np.abs(png - values).max() <= 0.5 / PNG_FULL_SCALE + 1e-7
        nifti, fraction = read_image(tmp_path / "nifti" / "300" / f"{exact.stem}.nii.gz")
        assert not fraction
        np.testing.assert_array_equal(nifti, values)
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_degraded(config, tmp_path / "png", "png")


def test_mri_export_writes_kspace_and_masks_that_give_back_the_degraded_images(tmp_path):
    config = load_config(ROOT / "configs" / "tiny-mri.yaml")
    manifest = export_degraded(config, tmp_path)
    assert "fftshift(fft2(ifftshift(x), norm='ortho'))" in manifest["kspace"]["convention"]
    for level in manifest["levels"]:
        mask = np.load(tmp_path / level / "mask.npy")
        assert mask.dtype == bool and mask.shape == (48, 48)
        assert 0.5 < mask.size / mask.sum() / float(level) < 2
        for image_id in manifest["image_ids"][:6]:
            kspace = np.load(tmp_path / level / f"{image_id}.kspace.npy")
            assert kspace.dtype == np.complex64 and not kspace[~mask].any()
            image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace), norm="ortho"))
            np.testing.assert_allclose(np.clip(np.abs(image), 0, 1), np.load(tmp_path / level / f"{image_id}.npy"),
                                       atol=1e-6)


def test_declared_range_and_size_map_back_to_the_study_and_pngs_are_fractions(tmp_path):
    config = load_config(ROOT / "configs" / "tiny.yaml")
    (tmp_path / "300").mkdir()
    values = np.linspace(-1, 1, 16 * 16, dtype=np.float32).reshape(1, 16, 16)  # (1, H, W): one image
    np.save(tmp_path / "300" / "a.npy", values)
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(pixels).save(tmp_path / "300" / "b.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "300" / "c.png")
    declared = UserReconstructorConfig(name="mine", source="files", path=str(tmp_path), value_range=(-1.0, 1.0),
                                       image_size=16)
    recon = ImportedReconstructions(config, torch.device("cpu"), declared)
    output = recon.reconstruct(torch.zeros(1, 1, 32, 32), None, 300.0, None, ["a"])
    expected = resample(torch.from_numpy((values[None] + 1) / 2), 32).clamp(0, 1)
    assert output.shape == (1, 1, 32, 32)
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)
    output = recon.reconstruct(torch.zeros(1, 1, 32, 32), None, 300.0, None, ["b"])  # 8-bit: pixel / 255
    torch.testing.assert_close(output, resample(torch.from_numpy(pixels / 255.0).float()[None, None], 32).clamp(0, 1))
    with pytest.raises(UserModelError, match=r"c\.png: a PNG in mode 'RGB'; write 8- or 16-bit grayscale"):
        recon.reconstruct(torch.zeros(1, 1, 32, 32), None, 300.0, None, ["c"])


def test_export_cli_prints_what_to_write_back(tmp_path, capsys):
    assert main(["export-degraded", "--config", str(ROOT / "configs" / "tiny.yaml"), "--out", str(tmp_path / "x"),
                 "--format", "nifti"]) == 0
    out = capsys.readouterr().out
    assert "exported 48 test images × 2 levels (3000, 300 photons/pixel) of tiny-xray as nifti" in out
    assert "(or .nii.gz as here)" in out and len(list((tmp_path / "x" / "3000").glob("*.nii.gz"))) == 48
    assert main(["export-degraded", "--config", str(ROOT / "configs" / "tiny.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "not an empty folder; export into a new or empty one" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["export-degraded", "--config", str(ROOT / "configs" / "tiny.yaml"),
                 "--out", str(tmp_path / "a-file" / "x")]) == 2
    assert re.search(r"a-file/x: cannot make the export folder \(Not a directory\)", capsys.readouterr().err)


def test_a_value_range_unlike_the_declared_one_for_the_same_folder_is_refused_not_ignored(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    config = with_imported(load_config(ROOT / "configs" / "tiny.yaml"), "mine", folder, (0.0, 4095.0))
    assert with_imported(config, "mine", folder) is config  # the declared range stands when the flag is left out
    assert with_imported(config, "mine", folder, (0.0, 4095.0)) is config
    with pytest.raises(ConfigError, match=r"--value-range 0 255: the config declares 'mine' with value_range "
                                          r"\[0.0, 4095.0\]"):
        with_imported(config, "mine", folder, (0.0, 255.0))


@pytest.mark.parametrize("ending", [".npy", ".nii.gz"])
def test_complex_values_are_refused_naming_the_file_not_cast_to_their_real_parts(tmp_path, ending):
    path = tmp_path / f"a{ending}"
    values = (np.ones((8, 8)) * (0.5 + 0.5j)).astype(np.complex64)
    if ending == ".npy":
        np.save(path, values)
    else:
        import nibabel as nib

        nib.save(nib.Nifti1Image(values, np.eye(4)), str(path))
    with pytest.raises(UserModelError, match=rf"{re.escape(str(path))}: holds complex values \(complex64\)"):
        read_image(path)
    np.save(tmp_path / "real.npy", np.full((8, 8), 0.5, np.float32))
    assert read_image(tmp_path / "real.npy")[0].dtype == np.float32


def test_mri_reconstructions_made_from_the_exported_kspace_store_the_zero_filled_runs_numbers(mri_store, tmp_path):
    """For MRI the route hands out the measured k-space: a zero-filled reconstruction made from it with NumPy
    outside Tandem, imported, stores the built-in `zero_filled` cells' numbers."""
    store, key, cache = mri_store
    data = queries.run_config(store, key)
    data["cohort"].pop("fingerprint", None)
    data["reconstructors"]["names"] = ["zero_filled"]
    config = from_dict(data)
    exported, recons = tmp_path / "exported", tmp_path / "recons"
    manifest = export_degraded(config, exported)
    for level in manifest["levels"]:
        (recons / level).mkdir(parents=True)
        for name in manifest["files"].values():
            kspace = np.load(exported / level / name.replace(".npy", ".kspace.npy"))
            image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace), norm="ortho"))
            np.save(recons / level / name, np.clip(np.abs(image), 0, 1).astype(np.float32))
    imported = with_imported(config, "zf_files", recons)
    mine = Store(tmp_path / "mri.duckdb")
    user_key = run_study(imported, mine, cache / "checkpoints", torch.device("cpu"))
    for level in (4.0, 8.0):
        a = queries.image_rows(mine, user_key, "zf_files", level).sort_values("image_id").select_dtypes("number")
        b = queries.image_rows(store, key, "zero_filled", level).sort_values("image_id").select_dtypes("number")
        assert len(a) == len(b) > 0
        # NumPy's FFT runs in double precision, the sweep's torch FFT in single: pixels differ by ~1e-7, SSIM by
        # up to 2e-6; the route itself adds nothing (the X-ray route above is equal to 1e-6)
        np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-5, equal_nan=True)
