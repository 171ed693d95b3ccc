"""GAN and diffusion reconstructors: losses fall, sampling is reproducible, the cache is used, MRI stays consistent.

The diffusion variants: from noise (SR3) or from the degraded image (SDEdit), deterministic (η = 0)
or stochastic (η = 1) steps, ε, v or x̂₀ prediction.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from recon_core.config import ConfigError, DiffusionConfig, GANConfig, ReconstructorsConfig, StudyConfig, parse_config
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
FROM_DEGRADED = dict(prediction="v", start="degraded", start_fraction=0.3, eta=1.0)
"""The demos' variant: v prediction, started from the degraded image at 0.3·T, ancestral (η = 1) steps."""


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


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
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


@pytest.mark.parametrize("variant", [dict(prediction="epsilon"), dict(prediction="sample"), FROM_DEGRADED],
                         ids=["epsilon", "sample", "from-degraded"])
def test_diffusion_sampling_is_deterministic_per_seed_and_independent_of_batching(variant):
    diffusion = past_rezero(build_reconstructor("diffusion", config(n_samples=2, **variant), torch.device("cpu")))
    physics = ProjectionDose(seed=0)
    noisy, _ = pairs(3)
    ids = ["a", "b", "c"]
    samples = diffusion.reconstruct_samples(noisy, physics, 300.0, noisy, ids)
    again = diffusion.reconstruct_samples(noisy[1:], physics, 300.0, noisy[1:], ids[1:])
    assert samples.shape == (2, *noisy.shape)
    assert torch.allclose(samples[:, 1:], again, atol=1e-5)  # batch composition does not matter
    one, std = samples.mean(0), samples.std(0)
    other = build_reconstructor("diffusion", dataclasses.replace(config(n_samples=2, **variant), seed=4),
                                torch.device("cpu"))
    other.net.load_state_dict(diffusion.net.state_dict())
    assert not torch.allclose(other.reconstruct(noisy, physics, 300.0, noisy, ids), one)  # the seed matters
    assert std is not None and std.shape == one.shape and float(std.mean()) > 0  # posterior spread kept
    assert float(one.min()) >= 0 and float(one.max()) <= 1


def mri_diffusion(**diffusion):
    """A diffusion reconstructor of the tiny MRI study (untrained, its residual branch open) and the k-space physics."""
    tiny = load_config(ROOT / "configs" / "tiny-mri.yaml")
    settings = DiffusionConfig(**(dict(channels=(8, 16, 32), sampling_steps=3, data_consistency=True) | diffusion))
    mri = dataclasses.replace(tiny, reconstructors=dataclasses.replace(tiny.reconstructors, names=("diffusion",),
                                                                       diffusion=settings))
    return past_rezero(build_reconstructor("diffusion", mri, torch.device("cpu"))), KspaceUndersampling(seed=0)


def kspace_misfit(image: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the mean distance of its k-space from the measured samples at the sampled positions."""
    from recon_core.physics.mri_kspace import fft2c

    return (fft2c(image.to(torch.complex64))[..., mask] - measured[..., mask]).abs().flatten(1).mean(1)


@pytest.mark.parametrize("variant", [dict(prediction="epsilon"), dict(prediction="sample"), FROM_DEGRADED],
                         ids=["epsilon", "sample", "from-degraded"])
def test_diffusion_with_data_consistency_keeps_the_measured_kspace(variant):
    diffusion, physics = mri_diffusion(**variant)
    bare, _ = mri_diffusion(**variant, data_consistency=False)
    bare.net.load_state_dict(diffusion.net.state_dict())
    clean = torch.from_numpy(smooth_images(2, 32)[:, None])
    measured = physics.measure(clean, 4.0, ["a", "b"])
    mask = physics.mask(4.0, 32)
    degraded = physics.to_image(measured, 4.0)
    with_dc = diffusion.reconstruct(degraded, physics, 4.0, measured, ["a", "b"])
    without = bare.reconstruct(degraded, physics, 4.0, measured, ["a", "b"])
    assert float(kspace_misfit(with_dc, measured, mask).mean()) < 0.5 * float(
        kspace_misfit(without, measured, mask).mean())


def test_every_mri_sample_keeps_the_measured_kspace_and_differs_only_where_unmeasured():
    """Data consistency per sample: the draws agree on the sampled frequencies, their spread is in the others."""
    from recon_core.physics.mri_kspace import fft2c

    diffusion, physics = mri_diffusion(**FROM_DEGRADED, n_samples=3)
    clean = torch.from_numpy(smooth_images(2, 32)[:, None])
    measured = physics.measure(clean, 8.0, ["a", "b"])
    mask = physics.mask(8.0, 32)
    samples = diffusion.reconstruct_samples(physics.to_image(measured, 8.0), physics, 8.0, measured, ["a", "b"])
    unconstrained = diffusion.sample(physics.to_image(measured, 8.0), physics, 8.0, None, ["a", "b"])
    for sample in samples:  # within float error of the clip to [0, 1], far from an unconstrained sample's misfit
        assert (kspace_misfit(sample, measured, mask) < 0.1 * kspace_misfit(unconstrained, measured, mask)).all()
    spectrum_spread = fft2c(samples[:, :, 0].to(torch.complex64)).abs().std(0)  # (B, H, W)
    assert float(spectrum_spread[..., ~mask].mean()) > 10 * float(spectrum_spread[..., mask].mean())


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


def test_from_degraded_with_a_tiny_start_fraction_returns_nearly_the_degraded_image():
    """t₀ = 1: x_{t₀} is y up to √(1−ᾱ₁) ≈ 0.01 of noise, and v prediction's x̂₀ tends to x_t as t → 0."""
    diffusion = build_reconstructor("diffusion", config(**(FROM_DEGRADED | dict(start_fraction=0.001)),
                                                        sampling_steps=1, n_samples=2), torch.device("cpu"))
    noisy, _ = pairs(3)
    samples = diffusion.reconstruct_samples(noisy, ProjectionDose(seed=0), 300.0, noisy, ["a", "b", "c"])
    assert float((samples - noisy).abs().max()) < 0.05
    far = build_reconstructor("diffusion", config(**FROM_DEGRADED, n_samples=2), torch.device("cpu"))
    far.net.load_state_dict(diffusion.net.state_dict())
    assert float((far.reconstruct_samples(noisy, ProjectionDose(seed=0), 300.0, noisy, ["a", "b", "c"])
                  - noisy).abs().mean()) > 5 * float((samples - noisy).abs().mean())


class GaussianPosterior(torch.nn.Module):
    """The exact x̂₀ = E[x₀ | x_t, y] of a pixelwise Gaussian model: x₀ ~ N(0, s²), y = x₀ + N(0, τ²), τ per pixel.

    Standing in for a perfectly trained `prediction: sample` network, it makes the sampler's own
    correctness testable: its samples must have the posterior's spread, 1 / √(1/s² + 1/τ²).
    `ignore_xt` returns E[x₀ | y] instead, as an x̂₀ network that learned to ignore x_t does.
    """

    def __init__(self, signal: torch.Tensor, prior: float, tau: torch.Tensor, ignore_xt: bool = False) -> None:
        super().__init__()
        self.signal, self.prior, self.tau, self.ignore_xt = signal, prior, tau, ignore_xt

    def forward(self, noisy: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a = self.signal[timesteps].view(-1, 1, 1, 1)
        from_xt = torch.zeros_like(a) if self.ignore_xt else a / (1 - a)
        precision = 1 / self.prior ** 2 + 1 / self.tau ** 2 + from_xt
        return (condition / self.tau ** 2 + from_xt / a.sqrt() * noisy) / precision


def gaussian_samples(settings: dict, ignore_xt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """16 draws of one 16×16 image under `GaussianPosterior` (τ 0.1 left, 0.5 right) and the exact posterior std."""
    diffusion = build_reconstructor("diffusion", config(**(dict(prediction="sample", n_samples=16) | settings)),
                                    torch.device("cpu"))
    tau = torch.full((1, 1, 16, 16), 0.1)
    tau[..., 8:] = 0.5
    prior = 0.3
    diffusion.net = GaussianPosterior(diffusion.scheduler.alphas_cumprod, prior, tau, ignore_xt)
    x0 = prior * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = x0 + tau * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    samples = diffusion.reconstruct_samples((y + 1) / 2, ProjectionDose(seed=0), 300.0, None, ["a"]) * 2 - 1
    return samples, (1 / prior ** 2 + 1 / tau ** 2).rsqrt()


@pytest.mark.parametrize("settings", [dict(sampling_steps=1000, eta=1.0), dict(sampling_steps=200, eta=0.0)],
                         ids=["ancestral", "ddim"])
def test_sampler_draws_the_exact_posterior_spread_of_a_gaussian_model(settings):
    """With the exact denoiser the chain from noise samples the posterior: its std per pixel within 10 %.

    (With few steps both under-disperse, ancestral steps most: 50 steps give 0.77–0.88 of the std,
    as coarse DDPM steps drop x̂₀'s own uncertainty, Bao et al.'s Analytic-DPM.)
    """
    samples, expected = gaussian_samples(settings)
    spread = samples.std(0)
    for half in (slice(0, 8), slice(8, 16)):
        ratio = float(spread[..., half].mean() / expected[..., half].mean())
        assert 0.9 < ratio < 1.1, (half, ratio)


def test_from_degraded_samples_spread_where_the_measurement_is_noisier():
    """SDEdit's start is not the exact posterior, but its spread still follows τ: wider where y is noisier."""
    samples, _ = gaussian_samples(dict(start="degraded", start_fraction=0.5, sampling_steps=20, eta=1.0))
    spread = samples.std(0)
    assert float(spread[..., 8:].mean()) > 1.5 * float(spread[..., :8].mean()) > 0


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_a_network_that_ignores_x_t_collapses_every_draw_onto_one_image(eta):
    """The old CPU demos' failure, by construction: x̂₀ = E[x₀ | y] leaves no spread, whatever η injects."""
    samples, _ = gaussian_samples(dict(sampling_steps=10, eta=eta), ignore_xt=True)
    assert float(samples.std(0).max()) < 1e-5


def test_matched_start_begins_a_cleaner_measurement_lower_in_the_chain():
    """'matched': each image's t₀ follows its own estimated noise, capped at start_fraction·(T − 1); batch-free."""
    diffusion = build_reconstructor("diffusion", config(**(FROM_DEGRADED | dict(start="matched")), n_samples=2),
                                    torch.device("cpu"))
    clean = torch.from_numpy(smooth_images(2, 32)[:, None])
    physics = ProjectionDose(seed=0)
    noisy, clearer = (physics.degrade(clean, level, ["a", "b"]) * 2 - 1 for level in (100.0, 100000.0))
    signal = diffusion.scheduler.alphas_cumprod
    low, high = diffusion._starts(clearer, signal), diffusion._starts(noisy, signal)
    assert (low < high).all() and (high <= 300).all() and (low >= 1).all()
    assert torch.equal(diffusion._starts(noisy[1:], signal), high[1:])
    samples = diffusion.reconstruct_samples((noisy + 1) / 2, physics, 100.0, None, ["a", "b"])
    assert torch.allclose(samples[:, 1:], diffusion.reconstruct_samples((noisy[1:] + 1) / 2, physics, 100.0, None,
                                                                        ["b"]), atol=1e-5)


@pytest.mark.parametrize(("settings", "message"), [
    (dict(start_fraction=0.5), "start_fraction.*is for start: degraded or matched"),
    (dict(start="degraded", start_fraction=0.0001), "rounds to t₀ = 0"),
    (dict(start="degraded", start_fraction=1.5), "start_fraction"),
    (dict(start="degraded", start_fraction=0.01, sampling_steps=20), "sampling_steps: 20 must be within 1–11"),
    (dict(eta=1.5), "eta"),
    (dict(eta=-0.1), "eta"),
    (dict(start="sideways"), "start"),
    (dict(start="matched", start_fraction=0.0001), "rounds to t₀ = 0"),
    (dict(prediction="x"), "prediction"),
])
def test_diffusion_settings_out_of_range_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"reconstructors": {"diffusion": settings}})


def test_new_diffusion_settings_leave_the_hash_of_configs_without_them_alone():
    """start, start_fraction and eta are left out of the hashed config at their defaults: old runs keep their keys."""
    plain = parse_config({"reconstructors": {"diffusion": {"sampling_steps": 10}}})
    assert {"start", "start_fraction", "eta"}.isdisjoint(plain.to_dict()["reconstructors"]["diffusion"])
    varied = parse_config({"reconstructors": {"diffusion": {"sampling_steps": 10, "eta": 1}}})
    assert varied.config_hash() != plain.config_hash()
    plain_model = build_reconstructor("diffusion", plain, torch.device("cpu"))
    varied_model = build_reconstructor("diffusion", varied, torch.device("cpu"))
    assert varied_model.weights_key() == plain_model.weights_key()  # η changes sampling, not training
    assert varied_model.cache_key() != plain_model.cache_key()
    started = parse_config({"reconstructors": {"diffusion": {"sampling_steps": 10, "start": "degraded",
                                                             "start_fraction": 0.3}}})
    assert build_reconstructor("diffusion", started, torch.device("cpu")).weights_key() != plain_model.weights_key()


def test_diffusion_calibration_benchmark_on_the_tiny_study(tmp_path):
    from benchmarks import diffusion_calibration

    out = tmp_path / "calibration.json"
    rows = diffusion_calibration.main(["--config", str(ROOT / "configs" / "tiny.yaml"), "--images", "4",
                                       "--steps", "2", "3", "--steps-train", "4", "--cache", str(tmp_path),
                                       "--device", "cpu", "--out", str(out)])
    assert [(row["level"], row["steps"]) for row in rows] == [(300.0, 2), (300.0, 3), (3000.0, 2), (3000.0, 3)]
    assert all(-1 <= row["spread_error_rho"] <= 1 and row["posterior_std"] > 0 for row in rows)
    assert out.exists() and rows[0]["train_steps_per_s"] > 0
    again = diffusion_calibration.main(["--config", str(ROOT / "configs" / "tiny.yaml"), "--images", "4",
                                        "--steps", "2", "--levels", "300", "--steps-train", "4", "--cache",
                                        str(tmp_path), "--device", "cpu"])
    assert again[0]["train_steps_per_s"] is None and again[0]["psnr"] == rows[0]["psnr"]  # loaded, same samples


def test_a_study_that_samples_with_diffusion_hashes_the_samplers_version_and_others_keep_their_keys():
    """A run stored by an older diffusion sampler is never resumed under the new one's key; a study without the
    diffusion reconstructor keeps the key it always had."""
    from recon_core.config import stable_hash

    without = parse_config({"reconstructors": {"names": ["none", "tv"]}})
    assert without.config_hash() == stable_hash(without)
    sampling = parse_config({"reconstructors": {"names": ["none", "diffusion"]}})
    assert sampling.config_hash() != stable_hash(sampling)
    assert sampling.config_hash() == parse_config(sampling.to_dict()).config_hash()  # stable
