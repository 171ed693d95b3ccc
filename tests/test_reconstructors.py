"""Reconstructor registry, the classical denoiser, U-Net training, checkpoint safety and seeded initial weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from recon_core.config import ReconstructorsConfig, StudyConfig, UNetConfig
from recon_core.diagnostics import Classifier
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.models.batches import SplitData
from recon_core.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from recon_core.physics import ProjectionDose
from recon_core.reconstructors import UnknownReconstructorError, available, build_reconstructor
from recon_core.reconstructors.tv_denoise import TVDenoise, tv_chambolle

CPU = torch.device("cpu")


def smooth_images(n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.stack([0.4 + 0.3 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(4 * yy) for _ in range(n)]
                    ).astype(np.float32)


def split_of(images: np.ndarray, physics=None, sex=None) -> SplitData:
    """Images as a training split: rows with an id, a subject and a sex each, no labels."""
    n = len(images)
    rows = pd.DataFrame({"image_id": [f"t{i}" for i in range(n)], "subject_id": [f"s{i}" for i in range(n)],
                         "sex": sex if sex is not None else ["F", "M"] * (n // 2) + ["F"] * (n % 2)})
    return SplitData(rows, images, (), None, physics)


def test_registry_lists_and_rejects():
    assert {"none", "tv", "unet", "zero_filled", "gan", "diffusion"} <= set(available())
    with pytest.raises(UnknownReconstructorError, match=r"unknown reconstructor 'magic'.*available"):
        build_reconstructor("magic", StudyConfig(), CPU)


def test_none_returns_the_degraded_image():
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(build_reconstructor("none", StudyConfig(), CPU).reconstruct(x, None, 1.0), x)


def test_tv_reduces_error_on_noisy_images():
    clean = torch.from_numpy(smooth_images()[:, None])
    physics = ProjectionDose(seed=0)
    noisy = physics.degrade(clean, 300.0, [str(i) for i in range(8)])
    out = build_reconstructor("tv", StudyConfig(), CPU).reconstruct(noisy, physics, 300.0)
    assert out.shape == noisy.shape and out.min() >= 0 and out.max() <= 1
    assert ((out - clean) ** 2).mean() < 0.7 * ((noisy - clean) ** 2).mean()


def tiny_unet_config(steps=40):
    unet = UNetConfig(channels=(8, 16), strides=(2,), num_res_units=0, steps=steps, batch_size=8, learning_rate=3e-3)
    return dataclasses.replace(StudyConfig(), reconstructors=ReconstructorsConfig(unet=unet))


def test_unet_training_lowers_error_and_reloads(tmp_path):
    config = tiny_unet_config()
    clean = smooth_images(16)
    physics = ProjectionDose(seed=0)
    batch = torch.from_numpy(clean[:8, None])
    noisy = physics.degrade(batch, 300.0, [f"t{i}" for i in range(8)])
    recon = build_reconstructor("unet", config, CPU)
    before = ((recon.reconstruct(noisy, physics, 300.0) - batch) ** 2).mean()
    recon.fit(split_of(clean, physics), tmp_path)
    after = ((recon.reconstruct(noisy, physics, 300.0) - batch) ** 2).mean()
    assert after < before
    again = build_reconstructor("unet", config, CPU)
    again.fit(split_of(clean, physics), tmp_path)  # loads the checkpoint, trains nothing
    torch.testing.assert_close(again.reconstruct(noisy, physics, 300.0), recon.reconstruct(noisy, physics, 300.0))


def test_checkpoint_from_another_architecture_is_refused(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / "w.pt"
    save_checkpoint(path, net, {"net": "linear", "n": 2})
    with pytest.raises(CheckpointError, match="checkpoint is for architecture"):
        load_checkpoint(path, net, {"net": "unet", "n": 2})
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(path, net, {"net": "linear", "n": 2})


@pytest.mark.parametrize("name", ["unet", "gan", "diffusion", "classifier", "segmenter"])
def test_initial_weights_depend_on_the_config_not_on_what_ran_before(name):
    """A model built after a checkpoint load (no training, no reseeding) starts from the same weights."""
    config = StudyConfig(seed=5)

    def build():
        if name == "classifier":
            return Classifier(config, ("finding",), CPU).net
        if name == "segmenter":
            return Segmenter(config, CPU).net
        return build_reconstructor(name, config, CPU).net

    torch.manual_seed(1)
    first = build().state_dict()
    torch.rand(100)  # something else drew from torch's global generator in between
    second = build().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = build_reconstructor("unet", StudyConfig(seed=6), CPU).net.state_dict() if name == "unet" else None
    assert other is None or not all(torch.equal(first[k], other[k]) for k in first)  # the seed does matter


@pytest.mark.parametrize("max_num_iter", [200, 7])
def test_batched_tv_equals_scikit_image_image_by_image(max_num_iter):
    """The torch port stops each image where scikit-image's loop breaks (or at the iteration limit)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 40)[None, :] * np.ones((40, 1))
    images = np.clip(ramp + rng.normal(0, 1, (6, 1, 1)) * np.array([0.01, 0.03, 0.1, 0.2, 0.3, 0.05])[:, None, None]
                     * rng.standard_normal((6, 40, 40)), 0, 1)
    weights = np.array([0.02, 0.05, 0.1, 0.3, 0.5, 1e-4])
    expected = np.stack([denoise_tv_chambolle(im, weight=w, max_num_iter=max_num_iter)
                         for im, w in zip(images, weights, strict=True)])
    got = tv_chambolle(torch.from_numpy(images), torch.from_numpy(weights), max_num_iter=max_num_iter)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
def test_tv_on_cuda_equals_tv_on_the_cpu(tiny_config):
    noise = 0.05 * np.random.default_rng(1).standard_normal((8, 32, 32))
    degraded = torch.from_numpy(np.clip(smooth_images(8, 32) + noise, 0, 1).astype(np.float32)[:, None])
    cpu = TVDenoise(tiny_config, torch.device("cpu")).reconstruct(degraded, ProjectionDose(0), 300.0)
    cuda = TVDenoise(tiny_config, torch.device("cuda")).reconstruct(degraded, ProjectionDose(0), 300.0)
    torch.testing.assert_close(cuda, cpu, rtol=0, atol=1e-6)
