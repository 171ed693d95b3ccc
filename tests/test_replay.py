"""Replaying one case reproduces the sweep exactly; attributions are sane and batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_core.explain.attributions import METHODS, attribute
from recon_core.models.checkpoints import CheckpointError
from recon_core.runner.replay import CaseReplayer
from recon_core.store import CLEAN, queries

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def replayer(built_store, tiny_config):
    _, _, cache = built_store
    return CaseReplayer(tiny_config, cache / "checkpoints", CPU)


@pytest.mark.parametrize("reconstructor,level", [("unet", 300.0), ("tv", 3000.0), ("none", 300.0),
                                                 ("unet+eodd", 300.0)])
def test_replay_reproduces_stored_scores_and_pixels(built_store, replayer, reconstructor, level):
    store, key, _ = built_store
    rows = queries.image_rows(store, key, reconstructor, level)
    clean_rows = queries.image_rows(store, key, CLEAN, 0.0)
    example = queries.examples(store, key, reconstructor, level)
    image_id = example.image_id.iloc[0]
    case = replayer.case(image_id, reconstructor, level)
    stored = rows[rows.image_id == image_id]
    stored_clean = clean_rows[clean_rows.image_id == image_id]
    for j, label in enumerate(case.labels):
        assert case.recon_scores[j] == pytest.approx(stored[f"score:{label}"].iloc[0], abs=1e-5)
        assert case.clean_scores[j] == pytest.approx(stored_clean[f"score:{label}"].iloc[0], abs=1e-5)
    pixels = example[(example.image_id == image_id) & (example.kind == "reconstructed")].pixels.iloc[0]
    np.testing.assert_allclose(case.reconstructed, pixels, atol=1e-3)  # stored as float16


def test_replay_refuses_to_train(tmp_path, tiny_config):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        CaseReplayer(tiny_config, tmp_path, CPU)


@pytest.mark.parametrize("method", METHODS)
def test_attributions_are_batched_normalised_maps(built_store, replayer, method):
    replayer_store, replayer_key, _ = built_store
    rows = queries.image_rows(replayer_store, replayer_key, CLEAN, 0.0)
    case = replayer.case(rows.image_id.iloc[0], "unet", 300.0)
    batch = torch.from_numpy(np.stack([case.clean, case.reconstructed])[:, None])
    maps = attribute(replayer.classifier, batch, replayer.classifier.labels[0], method)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()
    peaks = maps.reshape(2, -1).max(1)
    assert maps.min() >= 0 and np.all(np.isclose(peaks, 1) | (peaks == 0)) and peaks.max() == pytest.approx(1)
    single = attribute(replayer.classifier, batch[1:], replayer.classifier.labels[0], method)
    np.testing.assert_allclose(single[0], maps[1], atol=1e-4)  # batching does not change a map
