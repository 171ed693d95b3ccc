"""The user's own reconstructor in tandem: TorchScript, entry point and MONAI bundle give the built-in's numbers,
its SHA-256 keys the run, and every broken contract is a clear error that fails only its cell."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.user_model_overhead import unet_bundle
from recon_core.config import ConfigError, StudyConfig
from recon_core.config_loader import from_dict
from recon_core.models.user_models import UserModelError
from recon_core.reconstructors import build_reconstructor
from recon_core.runner import prepare, run_study
from recon_core.runner.replay import CaseReplayer
from recon_core.runner.study import train_models
from recon_core.store import Store, queries

CPU = torch.device("cpu")
LEVELS = (3000.0, 300.0)


def with_users(base: StudyConfig, users: list[dict], builtins: tuple[str, ...] = ("none",)) -> StudyConfig:
    """The tiny study sweeping `builtins` and the declared user reconstructors."""
    data = base.to_dict()
    data["reconstructors"]["names"] = [*builtins, *(u["name"] for u in users)]
    data["reconstructors"]["user"] = users
    return from_dict(data)


def cell_rows(store: Store, key: str, name: str, level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cell's per-image metrics (numeric columns, by image) and its per-label scores."""
    rows = queries.image_rows(store, key, name, level).sort_values("image_id").reset_index(drop=True)
    scores = store.query("""SELECT image_id, label, score FROM image_scores WHERE config_hash = ? AND
                            reconstructor = ? AND level = ? ORDER BY image_id, label""", [key, name, level])
    return rows.select_dtypes("number"), scores


def assert_same_cells(store: Store, key: str, name: str, other: Store, other_key: str, other_name: str) -> None:
    """Every level's stored metrics and scores of two cells agree to 1e-6."""
    for level in LEVELS:
        (a, sa), (b, sb) = cell_rows(store, key, name, level), cell_rows(other, other_key, other_name, level)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-6, equal_nan=True)
        assert (sa.image_id == sb.image_id).all()
        np.testing.assert_allclose(sa.score, sb.score, atol=1e-6)


@pytest.fixture(scope="module")
def trained_unet(built_store, tiny_config, tmp_path_factory) -> dict[str, Path]:
    """The tiny study's trained U-Net exported three ways: TorchScript, a state dict (entry point), a MONAI bundle."""
    _, _, cache = built_store
    unet = build_reconstructor("unet", tiny_config, CPU)
    unet.load(cache / "checkpoints")
    folder = tmp_path_factory.mktemp("user-models")
    torch.jit.script(unet.net).save(str(folder / "unet.pt"))
    torch.save(unet.net.state_dict(), folder / "unet-state.pt")
    bundle = unet_bundle(unet.net, tiny_config.reconstructors.unet, folder / "unet-bundle")
    return {"torchscript": folder / "unet.pt", "state": folder / "unet-state.pt", "bundle": bundle}


@pytest.mark.parametrize("route", ["torchscript", "entry_point", "bundle"])
def test_the_trained_unet_as_a_user_model_stores_the_built_in_runs_numbers(route, trained_unet, built_store,
                                                                           tiny_config, tmp_path):
    store, key, cache = built_store
    declared = {"torchscript": {"source": "torchscript", "path": str(trained_unet["torchscript"])},
                "entry_point": {"source": "entry_point", "entry_point": "tests.user_models.unet_entry:factory",
                                "path": str(trained_unet["state"])},
                "bundle": {"source": "bundle", "path": str(trained_unet["bundle"])}}[route]
    config = with_users(tiny_config, [{"name": "mine", **declared}])
    mine = Store(tmp_path / "mine.duckdb")
    user_key = run_study(config, mine, cache / "checkpoints", CPU)
    assert queries.run_status(mine, user_key) == "done"
    assert_same_cells(mine, user_key, "mine", store, key, "unet")
    assert_same_cells(mine, user_key, "none", store, key, "none")
    card = queries.model_cards(mine, user_key).iloc[0]
    assert (card.role, card["name"], card.source) == ("reconstructor", "mine", route)
    assert len(card.sha256) == 64 and json.loads(card.contract_json)["value_range"] == [0.0, 1.0]


def test_the_model_files_sha256_keys_the_run(trained_unet, tiny_config, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(trained_unet["torchscript"].read_bytes())
    config = with_users(tiny_config, [{"name": "mine", "source": "torchscript", "path": str(path)}])
    first = prepare(config)
    assert first.reconstructors.user[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prepare(config).config_hash() == first.config_hash()  # the same bytes: the same run, resumed
    torch.jit.script(torch.nn.Identity()).save(str(path))  # another model saved under the same name
    changed = prepare(config)
    assert changed.config_hash() != first.config_hash()
    assert changed.reconstructors.user[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert tiny_config.config_hash() == prepare(tiny_config).config_hash()  # no user models: hashes as before


def test_a_replay_uses_the_users_model_and_refuses_a_file_changed_since_the_run(trained_unet, built_store,
                                                                               tiny_config, tmp_path):
    store, key, cache = built_store
    path = tmp_path / "model.pt"
    path.write_bytes(trained_unet["torchscript"].read_bytes())
    config = prepare(with_users(tiny_config, [{"name": "mine", "source": "torchscript", "path": str(path)}]))
    replayer = CaseReplayer(config, cache / "checkpoints", CPU)
    image_id = queries.image_rows(store, key, "unet", 300.0).image_id.iloc[0]
    mine, built_in = replayer.case(image_id, "mine", 300.0), replayer.case(image_id, "unet", 300.0)
    np.testing.assert_allclose(mine.reconstructed, built_in.reconstructed, atol=1e-6)
    np.testing.assert_allclose(mine.recon_scores, built_in.recon_scores, atol=1e-6)
    torch.jit.script(torch.nn.Identity()).save(str(path))
    with pytest.raises(UserModelError, match=r"a model file of run tiny-xray \(\w+\) has changed since it ran"):
        CaseReplayer(config, cache / "checkpoints", CPU)


def test_a_user_model_that_fails_on_one_cell_fails_that_cell_only_and_is_retried_on_resume(
        built_store, tiny_config, tmp_path, monkeypatch):
    _, _, cache = built_store
    config = with_users(tiny_config, [{"name": "flaky", "source": "entry_point",
                                       "entry_point": "tests.user_models.unet_entry:identity_failing_while_flagged"}])
    store = Store(tmp_path / "flaky.duckdb")
    monkeypatch.setenv("TANDEM_TEST_FAIL", "1")
    key = run_study(config, store, cache / "checkpoints", CPU)
    cells = queries.cells(store, key).set_index(["reconstructor", "level"])
    assert cells.loc[("flaky", 3000.0), "status"] == "done"
    assert cells.loc[("flaky", 300.0), "status"] == "failed"
    assert "reconstructor 'flaky' at level 300" in cells.loc[("flaky", 300.0), "message"]
    assert "RuntimeError: CUDA out of memory (simulated)" in cells.loc[("flaky", 300.0), "message"]
    assert cells.loc[("none", 300.0), "status"] == "done"  # the other cells went on
    assert queries.image_rows(store, key, "flaky", 300.0).empty  # nothing partial stored
    run = queries.runs(store).set_index("config_hash").loc[key]
    assert run.status == "incomplete" and "1 cell(s) failed" in run.message
    monkeypatch.delenv("TANDEM_TEST_FAIL")
    assert run_study(config, store, cache / "checkpoints", CPU) == key  # the same model file: the same run
    assert queries.run_status(store, key) == "done"
    assert queries.failed_cells(store, key).empty
    counts = store.query("SELECT reconstructor, level, count(*) AS n FROM image_metrics WHERE config_hash = ? "
                         "GROUP BY ALL", [key])
    assert set(counts.n) == {48} and len(counts) == 5  # clean + 2 × 2 cells, no row twice
    none, _ = cell_rows(store, key, "none", 300.0)
    flaky, _ = cell_rows(store, key, "flaky", 300.0)
    np.testing.assert_allclose(flaky.to_numpy(float), none.to_numpy(float), atol=1e-6, equal_nan=True)


def test_per_level_models_serve_their_own_level(trained_unet, built_store, tiny_config, tmp_path):
    store, key, cache = built_store
    identity = tmp_path / "identity.pt"
    torch.jit.script(torch.nn.Identity()).save(str(identity))
    config = with_users(tiny_config, [{"name": "mine", "source": "torchscript", "per_level": {
        "3000": str(trained_unet["torchscript"]), "300": str(identity)}}])
    mine = Store(tmp_path / "per-level.duckdb")
    user_key = run_study(config, mine, cache / "checkpoints", CPU)
    unet, _ = cell_rows(store, key, "unet", 3000.0)
    none, _ = cell_rows(store, key, "none", 300.0)
    np.testing.assert_allclose(cell_rows(mine, user_key, "mine", 3000.0)[0].to_numpy(float), unet.to_numpy(float),
                               atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(cell_rows(mine, user_key, "mine", 300.0)[0].to_numpy(float), none.to_numpy(float),
                               atol=1e-6, equal_nan=True)
    with pytest.raises(ConfigError, match=r"per_level: needs one model for each level.*missing \['300'\]"):
        with_users(tiny_config, [{"name": "mine", "source": "torchscript", "per_level": {"3000": str(identity)}}])


class Broken(torch.nn.Module):
    """A model that breaks its contract in one way."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "channels":
            return torch.cat([x, x], 1)
        if self.fault == "size":
            return x[..., :16, :16]
        if self.fault == "nan":
            return x * float("nan")
        if self.fault == "range":
            return x * 255.0
        if self.fault == "raise":
            raise RuntimeError("expected 3 input channels")
        return x


@pytest.mark.parametrize(("fault", "message"), [
    ("channels", r"returned shape \[4, 2, 32, 32\], expected \[4, 1, 32, 32\] \(2 channels where 1 are expected\)"),
    ("size", r"returned shape \[4, 1, 16, 16\], expected \[4, 1, 32, 32\]"),
    ("nan", r"returned NaN or Inf values in 4 of 4 images"),
    ("range", r"returned values in \[\d.*\], outside its declared value_range \[0, 1\]"),
    ("raise", r"raised .*expected 3 input channels"),
])
def test_each_broken_contract_is_an_error_naming_the_model_level_and_images(fault, message, tiny_config, tmp_path):
    path = tmp_path / f"{fault}.pt"
    torch.jit.script(Broken(fault)).save(str(path))
    config = with_users(tiny_config, [{"name": "broken", "source": "torchscript", "path": str(path)}])
    recon = build_reconstructor("broken", config, CPU)
    images = torch.rand(4, 1, 32, 32)
    with pytest.raises(UserModelError, match=r"reconstructor 'broken' at level 300 on images a, b, c and 1 more: "
                                             + message):
        recon.reconstruct(images, None, 300.0, None, ["a", "b", "c", "d"])


def test_the_declared_contract_is_kept_value_range_and_size(tiny_config, tmp_path):
    """Tandem hands the model its declared range and size and maps the answer back; small excursions are clipped."""

    class Checks(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-1] == 64 and float(x.max()) > 1.5  # 64 px in [0, 1000]
            return x + 20.0  # 2 % of the span above: clipped, not refused

    path = tmp_path / "checks.pt"
    torch.jit.script(Checks()).save(str(path))
    config = with_users(tiny_config, [{"name": "hu", "source": "torchscript", "path": str(path),
                                       "value_range": [0, 1000], "image_size": 64}])
    ramp = torch.linspace(0, 0.5, 32)
    images = (ramp[:, None] + ramp[None, :]).expand(2, 1, 32, 32)  # smooth: resampling up and back keeps it
    out = build_reconstructor("hu", config, CPU).reconstruct(images, None, 3000.0)
    assert out.shape == images.shape
    np.testing.assert_allclose(out[..., 1:-1, 1:-1], (images + 0.02)[..., 1:-1, 1:-1], atol=0.01)  # edges resampled
    bright = torch.ones(2, 1, 32, 32)
    assert float(build_reconstructor("hu", config, CPU).reconstruct(bright, None, 3000.0).max()) == 1.0


def test_files_that_are_not_models_are_refused_with_their_names(tiny_config, tmp_path, monkeypatch):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"not a model at all")
    pickled = tmp_path / "pickled.pt"
    torch.save({"w": torch.zeros(2)}, pickled)  # a pickle, never loaded as one
    for path in (junk, pickled):
        config = with_users(tiny_config, [{"name": "mine", "source": "torchscript", "path": str(path)}])
        with pytest.raises(UserModelError, match=rf"reconstructor 'mine': {path} is not a TorchScript file"):
            build_reconstructor("mine", config, CPU)
    missing = with_users(tiny_config, [{"name": "mine", "source": "torchscript", "path": str(tmp_path / "no.pt")}])
    with pytest.raises(UserModelError, match=r"reconstructor 'mine': .*no\.pt is not a file"):
        prepare(missing)
    absent = with_users(tiny_config, [{"name": "mine", "source": "entry_point",
                                       "entry_point": "tandem_absent_pkg.models:build"}])
    with pytest.raises(UserModelError, match=r"entry point 'tandem_absent_pkg.models:build' does not import"):
        prepare(absent)
    (tmp_path / "needs_tf.py").write_text("raise ImportError('No module named tensorflow')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = with_users(tiny_config, [{"name": "mine", "source": "entry_point", "entry_point": "needs_tf:build"}])
    with pytest.raises(UserModelError, match=r"does not import \(ImportError: No module named tensorflow\)"):
        build_reconstructor("mine", broken, CPU)
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text(json.dumps(
        {"network_def": {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3}}))
    config = with_users(tiny_config, [{"name": "mine", "source": "bundle", "path": str(bundle)}])
    with pytest.raises(UserModelError, match=r"has no models/model.pt or models/model.ts"):
        build_reconstructor("mine", config, CPU)
    (bundle / "models").mkdir()
    torch.save({"weight": torch.zeros(2, 2)}, bundle / "models" / "model.pt")
    with pytest.raises(UserModelError, match=r"model.pt does not fit the bundle's network_def"):
        build_reconstructor("mine", config, CPU)


def test_a_user_model_that_does_not_load_stores_nothing_of_a_new_run(tiny_config, tmp_path, built_store):
    _, _, cache = built_store
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"garbage")
    config = with_users(tiny_config, [{"name": "mine", "source": "torchscript", "path": str(junk)}])
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(UserModelError, match="is not a TorchScript file"):
        run_study(config, store, cache / "checkpoints", CPU)
    assert queries.runs(store).empty


@pytest.mark.parametrize(("user", "message"), [
    ({"name": "unet", "source": "torchscript", "path": "m.pt"}, r"'unet' is a built-in reconstructor"),
    ({"name": "clean", "source": "torchscript", "path": "m.pt"}, r"'clean' is the clean road's name in the store"),
    ({"name": "mine", "source": "torchscript", "per_level": {"3000": "a.pt", "300": "b.pt", "3e2": "c.pt"}},
     r"per_level: '300' and '3e2' name the same level"),
    ({"name": "mine", "source": "torchscript"}, r"needs either path .* not neither"),
    ({"name": "mine", "source": "entry_point", "entry_point": "no_colon"}, r"must be 'package.module:factory'"),
    ({"name": "mine", "source": "torchscript", "path": "m.pt", "value_range": [1, 0]}, r"value_range: \[1.0, 0.0\]"),
    ({"name": "mine", "source": "torchscript", "path": "m.pt", "inputs": "image+kspace"}, r"needs MRI k-space"),
])
def test_declarations_that_cannot_work_are_config_errors(user, message, tiny_config):
    with pytest.raises(ConfigError, match=message):
        with_users(tiny_config, [user])
    data = tiny_config.to_dict()
    data["reconstructors"]["user"] = [{"name": "mine", "source": "torchscript", "path": "m.pt"}]
    with pytest.raises(ConfigError, match=r"'mine' is declared but not in reconstructors.names"):
        from_dict(data)


class ZeroFilledFromKspace(torch.nn.Module):
    """A k-space model: the zero-filled image from the measured (real, imaginary) k-space and the mask it is handed."""

    def forward(self, image: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        measured = torch.complex(kspace[:, 0], kspace[:, 1]) * mask[:, 0]
        shifted = torch.fft.ifftshift(measured, dim=(-2, -1))
        return torch.fft.fftshift(torch.fft.ifft2(shifted, norm="ortho"), dim=(-2, -1)).abs().clamp(0, 1)[:, None]


def test_an_mri_model_handed_kspace_and_mask_reproduces_the_zero_filled_images(mri_store, tmp_path):
    store, key, cache = mri_store
    path = tmp_path / "kspace.pt"
    torch.jit.script(ZeroFilledFromKspace()).save(str(path))
    config = queries.run_config(store, key)
    config["reconstructors"]["names"] = ["zero_filled", "from_kspace"]
    config["reconstructors"]["user"] = [{"name": "from_kspace", "source": "torchscript", "path": str(path),
                                         "inputs": "image+kspace"}]
    config["cohort"].pop("fingerprint", None)
    mine = Store(tmp_path / "mri.duckdb")
    user_key = run_study(from_dict(config), mine, cache / "checkpoints", CPU)
    for level in (4.0, 8.0):
        a = queries.image_rows(mine, user_key, "from_kspace", level).sort_values("image_id").select_dtypes("number")
        b = queries.image_rows(store, key, "zero_filled", level).sort_values("image_id").select_dtypes("number")
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-6, equal_nan=True)


def test_a_bundle_without_a_network_config_loads_its_torchscript_beside_a_state_dict(tiny_config, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    torch.jit.script(torch.nn.Identity()).save(str(bundle / "models" / "model.ts"))
    torch.save({"weight": torch.ones(1)}, bundle / "models" / "model.pt")  # needs a network_def: not loadable here
    config = with_users(tiny_config, [{"name": "mine", "source": "bundle", "path": str(bundle)}])
    images = torch.rand(2, 1, 32, 32)
    np.testing.assert_allclose(build_reconstructor("mine", config, CPU).reconstruct(images, None, 3000.0), images)
    before = prepare(config).reconstructors.user[0].sha256
    torch.save({"weight": torch.zeros(1)}, bundle / "models" / "model.pt")
    assert prepare(config).reconstructors.user[0].sha256 == before  # the hash covers what is loaded: model.ts
    torch.jit.script(torch.nn.ReLU()).save(str(bundle / "models" / "model.ts"))
    assert prepare(config).reconstructors.user[0].sha256 != before


def test_the_cache_key_covers_the_declared_contract_not_only_the_files(tiny_config, tmp_path):
    path = tmp_path / "identity.pt"
    torch.jit.script(torch.nn.Identity()).save(str(path))
    keys = {build_reconstructor("mine", prepare(with_users(tiny_config, [
        {"name": "mine", "source": "torchscript", "path": str(path), **extra}])), CPU).cache_key()
        for extra in ({}, {"value_range": [0, 10]}, {"image_size": 64})}
    assert len(keys) == 3


def test_a_users_torchscript_network_is_fine_tuned_by_a_mitigation_variant(trained_unet, built_store, tiny_config,
                                                                          tmp_path):
    """`mine+eodd` fine-tunes the user's own network through its contract; its weights key holds the file's SHA-256."""
    _, _, cache = built_store
    path = tmp_path / "model.pt"
    path.write_bytes(trained_unet["torchscript"].read_bytes())
    data = with_users(tiny_config, [{"name": "mine", "source": "torchscript", "path": str(path)}]).to_dict()
    data["reconstructors"]["names"] = ["none", "mine", "mine+eodd"]
    data["reconstructors"]["mitigation"] = {"steps": 6, "batch_size": 16}
    config = prepare(from_dict(data))
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for file in (cache / "checkpoints").glob("classifier-*.pt"):  # the run's trained classifier, not trained again
        (checkpoints / file.name).write_bytes(file.read_bytes())
    models = train_models(config, checkpoints, CPU)
    variant, base = models.reconstructors["mine+eodd"], models.reconstructors["mine"]
    x = torch.rand(4, 1, 32, 32)
    moved = variant.reconstruct(x, models.physics, 300.0) - base.reconstruct(x, models.physics, 300.0)
    assert 0 < float(moved.abs().max()) < 0.2
    torch.jit.script(torch.nn.Identity()).save(str(path))  # another file under the same name: another variant
    assert build_reconstructor("mine+eodd", prepare(config), CPU).weights_key() != variant.weights_key()
    with pytest.raises(ConfigError, match="must be one torchscript or entry-point network"):
        data["reconstructors"]["user"][0] = {"name": "mine", "source": "files", "path": str(tmp_path)}
        from_dict(data)
