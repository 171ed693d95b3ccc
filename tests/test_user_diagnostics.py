"""Bring your own diagnostic model: the user's classifier or segmenter in the built-in's place, held to its contract.

The tiny studies' trained networks, exported to TorchScript and declared as user models, must
store the built-in runs' numbers; a model that breaks the contract is an error naming it and
the problem, and a model that raises fails its cell only (the run, when it is the clean road).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core.config import StudyConfig, UserDiagnosticConfig
from recon_core.config_loader import from_dict, load_config
from recon_core.diagnostics import Classifier, Segmenter, UserClassifier, UserSegmenter
from recon_core.diagnostics.user import study_classifier, study_segmenter
from recon_core.explain.attributions import attribute, methods_for
from recon_core.modalities import get_modality
from recon_core.models.user_models import UserModelError
from recon_core.runner import run_study
from recon_core.runner.replay import CaseReplayer
from recon_core.runner.study import operating_thresholds, prepare
from recon_core.store import CLEAN, Store, queries

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def configured(base: StudyConfig, names: tuple[str, ...], levels: tuple[float, ...] | None = None,
               batch_size: int | None = None, **diagnostic: dict) -> StudyConfig:
    """`base` with these reconstructors (and levels, evaluation batch size) and user models, read as YAML would be."""
    data = base.to_dict()
    data["reconstructors"]["names"] = list(names)
    data["physics"]["levels"] = list(levels or base.physics.levels)
    data["evaluation"]["batch_size"] = batch_size or base.evaluation.batch_size
    data["diagnostic"].update(diagnostic)
    return from_dict(data)


TABLES = {"image_scores": "SELECT * FROM image_scores WHERE config_hash = ?",
          "image_metrics": "SELECT * FROM image_metrics WHERE config_hash = ?"}
"""The per-image tables compared, each read by a fixed, parameterised query."""


def table(store: Store, name: str, key: str) -> pd.DataFrame:
    """A run's rows of a per-image table, without the key, in a fixed order."""
    with store.connect() as con:
        rows = con.execute(TABLES[name], [key]).df()
    order = [c for c in ("reconstructor", "level", "image_id", "label") if c in rows]
    return rows.drop(columns="config_hash").sort_values(order).reset_index(drop=True)


def assert_same_rows(store: Store, key: str, reference: Store, reference_key: str) -> None:
    """image_scores and image_metrics of run `key` equal those of the same cells of the reference run to 1e-6."""
    for name in ("image_scores", "image_metrics"):
        mine, theirs = table(store, name, key), table(reference, name, reference_key)
        cells = mine[["reconstructor", "level"]].drop_duplicates()
        theirs = theirs.merge(cells).reset_index(drop=True)
        assert len(mine) == len(theirs) > 0 and len(cells) > 1, name
        numbers = mine.select_dtypes("number").columns
        pd.testing.assert_frame_equal(mine.drop(columns=numbers), theirs.drop(columns=numbers))
        np.testing.assert_allclose(mine[numbers].to_numpy(float), theirs[numbers].to_numpy(float), rtol=0,
                                   atol=1e-6, equal_nan=True, err_msg=name)


def cell_status(store: Store, key: str) -> dict[tuple[str, float], str]:
    """Each cell of a run and its status."""
    return {(c.reconstructor, c.level): c.status for c in queries.cells(store, key).itertuples()}


# ---------------------------------------------------------------- the tiny X-ray study, built in and exported


@pytest.fixture(scope="module")
def xray(built_store, tiny_config, tmp_path_factory) -> dict:
    """The tiny X-ray study's built-in run and its trained classifier exported to TorchScript."""
    store, key, cache = built_store
    labels = get_modality(tiny_config.modality).cohort_source(tiny_config).labels
    built_in = Classifier(prepare(tiny_config), labels, CPU)
    built_in.load(cache / "checkpoints")
    path = tmp_path_factory.mktemp("user-diagnostics-xray") / "classifier.ts"
    torch.jit.trace(built_in.net, torch.rand(2, 1, 32, 32)).save(str(path))
    metrics = table(store, "image_metrics", key)
    n_test = int((metrics.reconstructor == CLEAN).sum())
    return dict(config=tiny_config, store=store, key=key, cache=cache, labels=labels, path=path, built_in=built_in,
                n_test=n_test)


def sweep(base: StudyConfig, names: tuple[str, ...] = ("none", "tv"), **changes: dict | int) -> StudyConfig:
    """The tiny X-ray study as the user runs theirs here: a few reconstructors at the lowest dose."""
    return configured(base, names, levels=(300.0,), **changes)


def test_a_user_classifier_exported_to_torchscript_stores_the_built_in_runs_numbers(xray, tmp_path):
    config = sweep(xray["config"], classifier_model={
        "source": "torchscript", "path": str(xray["path"]), "labels": list(xray["labels"])})
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(config, store, tmp_path / "checkpoints", CPU)
    assert queries.run_status(store, key) == "done"
    assert set(cell_status(store, key).values()) == {"done"} and len(cell_status(store, key)) == 3
    assert_same_rows(store, key, xray["store"], xray["key"])
    theirs = queries.thresholds(xray["store"], xray["key"])
    assert queries.thresholds(store, key) == pytest.approx(theirs, abs=1e-6) and set(theirs) == set(xray["labels"])
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())  # trains nothing
    card = queries.model_cards(store, key)
    assert card.role.tolist() == ["classifier"] and len(card.sha256.iloc[0]) == 64


class Reordered(torch.nn.Module):
    """A classifier whose outputs come in another order, with an extra output, as probabilities."""

    def __init__(self, net: torch.nn.Module, order: list[int]) -> None:
        super().__init__()
        self.net, self.order = net, order

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images)
        extra = torch.zeros_like(logits[:, :1])
        return torch.sigmoid(torch.cat([logits[:, self.order], extra], 1))


def test_reordered_labels_as_probabilities_with_an_extra_output_and_a_given_threshold(xray, tmp_path):
    labels = xray["labels"]
    order = list(reversed(range(len(labels))))
    path = tmp_path / "reordered.ts"
    torch.jit.trace(Reordered(xray["built_in"].net, order), torch.rand(2, 1, 32, 32)).save(str(path))
    given = {labels[0]: 0.3125}
    config = sweep(xray["config"], ("none",), classifier_model={
        "source": "torchscript", "path": str(path), "labels": [labels[j] for j in order] + ["extra"],
        "outputs": "probabilities", "thresholds": given})
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(config, store, tmp_path / "checkpoints", CPU)
    assert_same_rows(store, key, xray["store"], xray["key"])
    stored, chosen = queries.thresholds(store, key), queries.thresholds(xray["store"], xray["key"])
    assert stored[labels[0]] == 0.3125  # as given, not chosen
    assert {k: v for k, v in stored.items() if k != labels[0]} == pytest.approx(
        {k: v for k, v in chosen.items() if k != labels[0]}, abs=1e-6)


FLAKY_MODULE = '''
"""A user's classifier that raises on some calls (a test's entry point)."""
import torch


def make(path, failing):
    net = torch.jit.load(path)
    calls = []

    def model(images):
        calls.append(1)
        if failing is None or len(calls) in failing:
            raise RuntimeError(f"out of memory on call {len(calls)}")
        return net(images)
    return model


def flaky(path):
    return make(path, {4})


def broken(path):
    return make(path, None)
'''


@pytest.fixture()
def entry_points(tmp_path, monkeypatch) -> str:
    """A module of user classifiers on the Python path: `flaky` raises on its 4th batch, `broken` on every one."""
    (tmp_path / "tandem_flaky_classifier.py").write_text(textwrap.dedent(FLAKY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tandem_flaky_classifier"


def test_a_classifier_that_raises_on_a_batch_fails_its_cell_only_and_stores_none_of_it(xray, entry_points, tmp_path):
    labels = xray["labels"]
    config = sweep(xray["config"], batch_size=math.ceil(xray["n_test"] / 2), classifier_model={
        "source": "entry_point", "entry_point": f"{entry_points}:flaky", "path": str(xray["path"]),
        "labels": list(labels), "thresholds": dict.fromkeys(labels, 0.5)})
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(config, store, tmp_path / "checkpoints", CPU)  # calls 1–2: clean; 3–4: the first cell
    status = cell_status(store, key)
    failed = [cell for cell, state in status.items() if state == "failed"]
    assert len(failed) == 1 and sum(state == "done" for state in status.values()) == 2
    assert queries.run_status(store, key) == "incomplete"
    message = queries.failed_cells(store, key).message.iloc[0]
    assert f"diagnostic.classifier_model (entry_point {entry_points}:flaky)" in message
    assert "raised RuntimeError: out of memory on call 4" in message and "(on images " in message
    name, level = failed[0]
    for rows in (table(store, "image_scores", key), table(store, "image_metrics", key)):
        assert not ((rows.reconstructor == name) & (rows.level == level)).any()  # nothing partial stored
    assert queries.thresholds(store, key) == dict.fromkeys(labels, 0.5)


def test_a_classifier_that_raises_on_the_clean_road_fails_the_run_with_its_message(xray, entry_points, tmp_path):
    labels = xray["labels"]
    config = sweep(xray["config"], ("none",), classifier_model={
        "source": "entry_point", "entry_point": f"{entry_points}:broken", "path": str(xray["path"]),
        "labels": list(labels), "thresholds": dict.fromkeys(labels, 0.5)})
    store = Store(tmp_path / "tandem.duckdb")
    with pytest.raises(UserModelError, match=r"broken\).*raised RuntimeError: out of memory on call 1 \(on images"):
        run_study(config, store, tmp_path / "checkpoints", CPU)
    assert queries.runs(store).empty  # a new run that stopped on its clean road leaves no trace


def test_the_failure_cases_replay_works_with_a_user_classifier(xray, tmp_path):
    path = tmp_path / "classifier.ts"
    path.write_bytes(xray["path"].read_bytes())
    config = prepare(sweep(xray["config"], classifier_model={
        "source": "torchscript", "path": str(path), "labels": list(xray["labels"])}))
    reference = CaseReplayer(xray["config"], xray["cache"] / "checkpoints", CPU)
    replayer = CaseReplayer(config, tmp_path / "no-checkpoints", CPU)
    assert isinstance(replayer.classifier, UserClassifier)
    image_id = table(xray["store"], "image_metrics", xray["key"]).image_id.iloc[0]
    mine, theirs = replayer.case(image_id, "tv", 300.0), reference.case(image_id, "tv", 300.0)
    np.testing.assert_allclose(mine.recon_scores, theirs.recon_scores, atol=1e-6)
    np.testing.assert_allclose(mine.clean_scores, theirs.clean_scores, atol=1e-6)
    assert methods_for(replayer.classifier) == ("integrated_gradients",)
    images = torch.from_numpy(np.stack([mine.clean, mine.reconstructed])[:, None])
    maps = attribute(replayer.classifier, images, xray["labels"][0], "integrated_gradients", steps=4)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.max() == pytest.approx(1.0)
    scripted(Constant(0.0, len(xray["labels"])), tmp_path)
    (tmp_path / "model.ts").replace(path)  # another model under the run's file name
    with pytest.raises(UserModelError, match="has changed since it ran"):
        CaseReplayer(config, tmp_path, CPU)


def test_given_thresholds_for_every_finding_read_no_validation_image(xray, entry_points):
    labels = xray["labels"]
    config = sweep(xray["config"], ("none",), classifier_model={
        "source": "entry_point", "entry_point": f"{entry_points}:broken", "path": str(xray["path"]),
        "labels": list(labels), "thresholds": {label: 0.25 + 0.1 * j for j, label in enumerate(labels)}})
    modality = get_modality(config.modality)
    cohort = modality.cohort_source(config).load()
    thresholds = operating_thresholds(modality, cohort, study_classifier(config, labels, CPU))  # never calls it
    assert thresholds == {label: 0.25 + 0.1 * j for j, label in enumerate(labels)}


# ---------------------------------------------------------------- the tiny MRI study's segmenter


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # MONAI's UNet checks shapes in Python
def test_a_user_segmenter_exported_to_torchscript_stores_the_built_in_runs_dice_and_hd95(mri_store, tmp_path):
    reference, reference_key, cache = mri_store
    checkpoints = cache / "checkpoints"
    base = load_config(ROOT / "configs" / "tiny-mri.yaml")
    segmenter = Segmenter(prepare(base), CPU)
    segmenter.load(checkpoints)
    path = tmp_path / "segmenter.ts"
    torch.jit.trace(segmenter.net, torch.rand(2, 1, 48, 48)).save(str(path))
    config = configured(base, ("zero_filled",), segmenter_model={
        "source": "torchscript", "path": str(path), "labels": ["background", "tumour"], "lesion": "tumour"})
    trained = sorted(p.name for p in checkpoints.iterdir())
    store = Store(tmp_path / "tandem.duckdb")
    key = run_study(config, store, checkpoints, CPU)
    assert sorted(p.name for p in checkpoints.iterdir()) == trained  # the built-in classifier was not retrained
    assert queries.run_status(store, key) == "done"
    assert_same_rows(store, key, reference, reference_key)
    assert queries.thresholds(store, key) == pytest.approx(queries.thresholds(reference, reference_key), abs=1e-6)
    metrics = table(store, "image_metrics", key)
    assert metrics.dice.notna().any() and metrics.hd95.notna().any()


def test_a_monai_bundle_segmenter_answers_as_the_built_in(mri_store, tmp_path):
    base = load_config(ROOT / "configs" / "tiny-mri.yaml")
    segmenter = Segmenter(prepare(base), CPU)
    segmenter.load(mri_store[2] / "checkpoints")
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    channels = list(base.diagnostic.segmenter_channels)
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": {
        "_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2,
        "channels": channels, "strides": [2] * (len(channels) - 1), "num_res_units": 1}}))
    torch.save(segmenter.net.state_dict(), bundle / "models" / "model.pt")
    config = replace(base, diagnostic=replace(base.diagnostic, segmenter_model=UserDiagnosticConfig(
        source="bundle", path=str(bundle), labels=("background", "tumour"), lesion="tumour")))
    user = study_segmenter(config, CPU)
    assert isinstance(user, UserSegmenter)
    images = torch.rand(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(user.net.outputs(images), segmenter.net(images), atol=1e-6, rtol=0)
    assert np.array_equal(user.evaluate(images, None).masks, segmenter.evaluate(images, None).masks)


def test_declaring_user_models_leaves_the_built_in_models_weights_keys_as_they_were():
    tiny = load_config(ROOT / "configs" / "tiny.yaml")
    declared = UserDiagnosticConfig(source="torchscript", path="elsewhere.ts", labels=("background", "tumour"),
                                    lesion="tumour", sha256="0" * 64)
    both = replace(tiny, diagnostic=replace(tiny.diagnostic, classifier_model=declared, segmenter_model=declared))
    for config in (tiny, both):
        assert Classifier(config, ("a",), CPU).weights_key() == "2145dd99cb6e810a"  # the key from before they existed
        assert Segmenter(config, CPU).weights_key() == "cf6bbf541493fc98"
    assert both.config_hash() != tiny.config_hash()


# ---------------------------------------------------------------- the contract, model by model


def user_config(role: str, **declared) -> StudyConfig:
    """A default study declaring one user model (`role`: classifier_model or segmenter_model)."""
    config = StudyConfig()
    return replace(config, diagnostic=replace(config.diagnostic, **{role: UserDiagnosticConfig(**declared)}))


class Constant(torch.nn.Module):
    """(B, outputs) or (B, outputs, H, W) filled with `value`."""

    def __init__(self, value: float, outputs: int, spatial: bool = False) -> None:
        super().__init__()
        self.value, self.outputs, self.spatial = value, outputs, spatial

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            return images.new_full((images.shape[0], self.outputs, images.shape[2], images.shape[3]), self.value)
        return images.new_full((images.shape[0], self.outputs), self.value)


def scripted(module: torch.nn.Module, folder: Path) -> str:
    """`module` saved as TorchScript in `folder`; its path."""
    path = folder / "model.ts"
    torch.jit.script(module).save(str(path))
    return str(path)


@pytest.mark.parametrize("module,declared,problem", [
    (Constant(0.0, 3), {}, r"returned shape \[4, 3\], expected \[4, 2\] \(3 outputs where its labels name 2\)"),
    (Constant(float("nan"), 2), {}, "returned NaN or Inf values in 4 of 4 images"),
    (Constant(2.5, 2), {"outputs": "probabilities"},
     r"declared outputs 'probabilities' but returned values in \[2.5, 2.5\]"),
], ids=["outputs", "nan", "probabilities"])
def test_a_classifier_breaking_its_contract_is_an_error_naming_it(tmp_path, module, declared, problem):
    path = scripted(module, tmp_path)
    config = user_config("classifier_model", source="torchscript", path=path, labels=("a", "b"), **declared)
    classifier = UserClassifier(config, ("a", "b"), CPU)
    with pytest.raises(UserModelError, match=rf"diagnostic.classifier_model \(torchscript {path}\): {problem}"):
        classifier.evaluate(torch.rand(4, 1, 32, 32), None)


def test_a_segmenter_with_the_wrong_channel_count_is_an_error_naming_it(tmp_path):
    path = scripted(Constant(0.0, 3, spatial=True), tmp_path)
    config = user_config("segmenter_model", source="torchscript", path=path, labels=("background", "tumour"),
                         lesion="tumour")
    with pytest.raises(UserModelError, match=r"segmenter_model .*returned shape \[2, 3, 32, 32\], expected "
                                             r"\[2, 2, 32, 32\] \(3 outputs where its labels name 2\)"):
        UserSegmenter(config, CPU).evaluate(torch.rand(2, 1, 32, 32), None)


def test_a_missing_label_a_file_that_is_not_torchscript_and_an_entry_point_that_does_not_import(tmp_path):
    path = scripted(Constant(0.0, 1), tmp_path)
    config = user_config("classifier_model", source="torchscript", path=path, labels=("a",))
    with pytest.raises(UserModelError, match=r"classifier_model .*: its labels \['a'\] lack the cohort's "
                                             r"finding\(s\) \['b'\]"):
        study_classifier(config, ("a", "b"), CPU)
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"not a model")
    config = user_config("classifier_model", source="torchscript", path=str(junk), labels=("a",))
    with pytest.raises(UserModelError, match=rf"classifier_model \(torchscript {junk}\): {junk} is not a "
                                             "TorchScript file"):
        study_classifier(config, ("a",), CPU)
    config = user_config("classifier_model", source="entry_point", entry_point="no_such_package.nets:make",
                         labels=("a",))
    with pytest.raises(UserModelError, match=r"entry point 'no_such_package.nets:make' does not import"):
        study_classifier(config, ("a",), CPU)


class ChannelMeans(torch.nn.Module):
    """Each channel's mean and the input's size: what Tandem handed the model."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = torch.full_like(images[:, :1, 0, 0], float(images.shape[-1]))
        return torch.cat([images.mean((-2, -1)), size], 1)


def test_the_classifier_receives_the_declared_size_normalisation_and_channels(tmp_path):
    path = scripted(ChannelMeans(), tmp_path)
    config = user_config("classifier_model", source="torchscript", path=path, labels=("r", "g", "b", "size"),
                         image_size=16, normalise=(0.5, 0.25), channels=3)
    classifier = UserClassifier(config, ("size", "g"), CPU)
    images = torch.rand(3, 1, 32, 32)
    expected = (torch.nn.functional.interpolate(images, size=(16, 16), mode="bilinear", antialias=True) - 0.5) / 0.25
    outputs = classifier.net.outputs(images)
    assert torch.equal(outputs[:, 0], torch.full((3,), 16.0))  # the cohort's order: size, then g
    torch.testing.assert_close(outputs[:, 1], expected.mean((-3, -2, -1)))
    np.testing.assert_allclose(classifier.evaluate(images, None).scores, torch.sigmoid(outputs).numpy(), atol=1e-7)


class Disc(torch.nn.Module):
    """A segmenter at its own size: 'tumour' (channel 0) wins inside a centred disc of radius `radius` px; its
    scores move with the pixels (so attributions have something to find)."""

    def __init__(self, radius: float) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[-1]
        axis = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        inside = ((axis[:, None] ** 2 + axis[None, :] ** 2) < self.radius ** 2).float()
        tumour = inside * 2 - 1 + images.mean(1, keepdim=True)  # [0, 1] images never change which class wins
        return torch.cat([tumour, -tumour], 1)


def test_a_segmenter_at_its_own_size_gives_masks_at_the_studys_with_its_lesion_class(tmp_path):
    path = scripted(Disc(4.0), tmp_path)
    config = user_config("segmenter_model", source="torchscript", path=path, labels=("tumour", "background"),
                         lesion="tumour", image_size=16)
    segmenter = UserSegmenter(config, CPU)
    truth = torch.zeros(2, 1, 32, 32, dtype=torch.uint8)
    axis = torch.arange(32, dtype=torch.float32) - 15.5
    truth[:, 0] = ((axis[:, None] ** 2 + axis[None, :] ** 2) < 8.0 ** 2).to(torch.uint8)
    answer = segmenter.evaluate(torch.rand(2, 1, 32, 32), truth)
    assert answer.masks.shape == (2, 32, 32) and answer.masks.sum() > 0
    assert (answer.metrics["dice"] > 0.9).all()  # the 4 px disc at 16 px is the 8 px disc at 32 px
    maps = attribute(segmenter, torch.rand(2, 1, 32, 32), None, "integrated_gradients", steps=4)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.max() == pytest.approx(1.0)
