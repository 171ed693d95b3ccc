"""GAN and diffusion reconstructors: losses fall, sampling is reproducible, the cache is used, MRI stays consistent."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from recon_core.config import DiffusionConfig, GANConfig, ReconstructorsConfig, StudyConfig
from recon_core.config_loader import load_config
from recon_core.diagnostics import Classifier
from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.checkpoints import CheckpointError
from recon_core.models.losses import DenoisingLoss
from recon_core.physics import KspaceUndersampling, ProjectionDose
from recon_core.reconstructors import build_reconstructor
from recon_core.reconstructors.diffusion import DiffusionNet
from recon_core.runner.evaluate import evaluate_cell
from tests.conftest import ROOT
from tests.test_reconstructors import smooth_images, split_of

SMALL = dict(channels=(8, 16, 32), batch_size=4)


def config(**diffusion) -> StudyConfig:
    return StudyConfig(seed=3, reconstructors=ReconstructorsConfig(
        names=("gan", "diffusion"),
        gan=GANConfig(channels=(8, 16, 32), strides=(2, 2), disc_channels=8, disc_layers=2, steps=5, batch_size=4),
        diffusion=DiffusionConfig(**(SMALL | dict(steps=5, sampling_steps=4) | diffusion))))


def past_rezero(diffusion):
    """Opens the residual branch of x̂₀ prediction: at α = 0 (the untrained start) x̂₀ is y and ignores x_t."""
    if diffusion.net.alpha is not None:
        with torch.no_grad():
            diffusion.net.alpha.fill_(0.5)
    return diffusion


def pairs(n=4):
    clean = torch.from_numpy(smooth_images(n, 32)[:, None])
    noisy = ProjectionDose(seed=0).degrade(clean, 300.0, [f"i{k}" for k in range(n)])
    return noisy, clean


def batch_of(noisy: torch.Tensor, clean: torch.Tensor) -> TrainingBatch:
    n = len(clean)
    return TrainingBatch(clean, pd.DataFrame({"image_id": [f"i{k}" for k in range(n)]}), torch.zeros(n, 0),
                         degraded=noisy, level=300.0)


def step(objective, batch: TrainingBatch) -> tuple[float, float]:
    """One optimiser step of one objective: its loss before and after."""
    before = objective.loss(objective.output(batch), batch)
    objective.optimiser.zero_grad()
    before.backward()
    objective.optimiser.step()
    return float(before.detach()), float(objective.loss(objective.output(batch), batch).detach())


def test_one_gan_step_lowers_each_loss_on_a_tiny_batch():
    """The discriminator's step lowers its loss, then the generator's step lowers pix2pix's L1 + adversarial loss."""
    torch.manual_seed(0)
    gan = build_reconstructor("gan", config(), torch.device("cpu"))
    noisy, clean = pairs()
    plan = gan.training_plan(split_of(clean[:, 0].numpy(), ProjectionDose(seed=0)), {})
    discriminator, generator = plan.objectives
    batch = batch_of(noisy, clean)
    before, after = step(discriminator, batch)
    assert after < before
    before, after = step(generator, batch)
    assert after < before


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_one_diffusion_step_lowers_the_loss_on_a_tiny_batch(prediction):
    torch.manual_seed(0)
    diffusion = build_reconstructor("diffusion", config(prediction=prediction), torch.device("cpu"))
    noisy, clean = pairs()
    optimiser = torch.optim.Adam(diffusion.net.parameters(), lr=1e-3)
    batch = batch_of(noisy, clean)

    def loss() -> torch.Tensor:  # same timesteps and noise each time: the change is the step's doing
        return DenoisingLoss()(diffusion.denoise(batch, torch.Generator().manual_seed(1)), batch)

    before = loss()
    optimiser.zero_grad()
    before.backward()
    optimiser.step()
    assert float(loss().detach()) < float(before.detach())


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_diffusion_sampling_is_deterministic_per_seed_and_independent_of_batching(prediction):
    diffusion = past_rezero(build_reconstructor("diffusion", config(n_samples=2, prediction=prediction),
                                                torch.device("cpu")))
    physics = ProjectionDose(seed=0)
    noisy, _ = pairs(3)
    ids = ["a", "b", "c"]
    samples = diffusion.reconstruct_samples(noisy, physics, 300.0, noisy, ids)
    again = diffusion.reconstruct_samples(noisy[1:], physics, 300.0, noisy[1:], ids[1:])
    assert samples.shape == (2, *noisy.shape)
    assert torch.allclose(samples[:, 1:], again, atol=1e-5)  # batch composition does not matter
    one, std = samples.mean(0), samples.std(0)
    other = build_reconstructor("diffusion", dataclasses.replace(config(n_samples=2, prediction=prediction), seed=4),
                                torch.device("cpu"))
    other.net.load_state_dict(diffusion.net.state_dict())
    assert not torch.allclose(other.reconstruct(noisy, physics, 300.0, noisy, ids), one)  # the seed matters
    assert std is not None and std.shape == one.shape and float(std.mean()) > 0  # posterior spread kept
    assert float(one.min()) >= 0 and float(one.max()) <= 1


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_diffusion_with_data_consistency_keeps_the_measured_kspace(prediction):
    tiny = load_config(ROOT / "configs" / "tiny-mri.yaml")
    mri = dataclasses.replace(tiny, reconstructors=dataclasses.replace(tiny.reconstructors, names=("diffusion",),
                                                                       diffusion=DiffusionConfig(
        prediction=prediction, channels=(8, 16, 32), sampling_steps=3, data_consistency=True)))
    diffusion = past_rezero(build_reconstructor("diffusion", mri, torch.device("cpu")))
    physics = KspaceUndersampling(seed=0)
    clean = torch.from_numpy(smooth_images(2, 32)[:, None])
    measured = physics.measure(clean, 4.0, ["a", "b"])
    free = dataclasses.replace(mri, reconstructors=dataclasses.replace(
        mri.reconstructors, diffusion=dataclasses.replace(mri.reconstructors.diffusion, data_consistency=False)))
    bare = build_reconstructor("diffusion", free, torch.device("cpu"))
    bare.net.load_state_dict(diffusion.net.state_dict())
    from recon_core.physics.mri_kspace import fft2c

    mask = physics.mask(4.0, 32)

    def misfit(image: torch.Tensor) -> float:
        return float((fft2c(image.to(torch.complex64))[..., mask] - measured[..., mask]).abs().mean())

    degraded = physics.to_image(measured, 4.0)
    with_dc = diffusion.reconstruct(degraded, physics, 4.0, measured, ["a", "b"])
    without = bare.reconstruct(degraded, physics, 4.0, measured, ["a", "b"])
    assert misfit(with_dc) < 0.5 * misfit(without)


def test_second_sweep_of_a_cell_takes_diffusion_outputs_from_the_cache(tmp_path, monkeypatch):
    cfg = config()
    diffusion = build_reconstructor("diffusion", cfg, torch.device("cpu"))
    physics = ProjectionDose(seed=0)
    rows = pd.DataFrame({"image_id": [f"i{k}" for k in range(6)], "subject_id": [f"s{k}" for k in range(6)],
                         "sex": ["F", "M"] * 3, "age": 50.0, "age_band": "<60", "finding": [0.0, 1.0] * 3})
    data = SplitData(rows, smooth_images(6, 32), ("finding",))
    classifier = Classifier(cfg, ("finding",), torch.device("cpu"))
    calls = []
    original = diffusion.sample
    monkeypatch.setattr(diffusion, "sample", lambda *a, **k: calls.append(len(a[4])) or original(*a, **k))

    def run():
        return evaluate_cell(data, [classifier], physics, diffusion, 300.0, torch.device("cpu"), 4, [],
                             cache_root=tmp_path)

    first = run()
    assert sum(calls) == 6
    second = run()
    assert sum(calls) == 6  # nothing sampled again
    pd.testing.assert_frame_equal(first.metrics, second.metrics)
    assert list((tmp_path).glob("diffusion-*/300.npz"))


@pytest.mark.parametrize("name", ["gan", "diffusion"])
def test_checkpoint_from_another_architecture_is_a_clear_error(tmp_path, name):
    narrow = build_reconstructor(name, config(), torch.device("cpu"))
    narrow.fit(split_of(smooth_images(8, 32), ProjectionDose(seed=0)), tmp_path)
    wide_config = config(channels=(16, 32, 64)) if name == "diffusion" else dataclasses.replace(
        config(), reconstructors=dataclasses.replace(config().reconstructors, gan=dataclasses.replace(
            config().reconstructors.gan, channels=(16, 32, 64))))
    wide = build_reconstructor(name, wide_config, torch.device("cpu"))
    narrow.checkpoint_path(tmp_path).rename(wide.checkpoint_path(tmp_path))  # a file of the wrong network
    with pytest.raises(CheckpointError, match="checkpoint is for architecture"):
        wide.load(tmp_path)


def test_an_unreadable_cache_file_is_resampled_not_an_error(tmp_path):
    from recon_core.runner.recon_cache import ReconstructionCache

    cache = ReconstructionCache(tmp_path, "diffusion", "k", 300.0)
    cache.put("a", torch.ones(1, 4, 4).numpy(), None, None)
    cache.save()
    cache.path.write_bytes(b"not an npz")  # truncated or overwritten
    again = ReconstructionCache(tmp_path, "diffusion", "k", 300.0)
    assert again.get("a") is None
    again.put("a", torch.zeros(1, 4, 4).numpy(), None, None)
    again.save()
    assert float(ReconstructionCache(tmp_path, "diffusion", "k", 300.0).get("a")[0].sum()) == 0


def test_diffusion_unet_fused_attention_equals_monai_einsum_attention():
    """The GPU network's middle-block attention through torch's SDPA: MONAI's einsum values, same weights."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fused = DiffusionNet("diffusion_unet", (16, 32, 32, 64), 1000, "epsilon")
    plain = DiffusionModelUNet(spatial_dims=2, in_channels=2, out_channels=1, channels=(16, 32, 32, 64),
                               attention_levels=(False,) * 4, num_res_blocks=1, norm_num_groups=16)
    plain.load_state_dict(fused.body.state_dict())
    x, condition, t = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32), torch.tensor([5, 500])
    with torch.no_grad():
        torch.testing.assert_close(fused(x, condition, t), plain(torch.cat([x, condition], 1), t),
                                   rtol=1e-4, atol=1e-5)
