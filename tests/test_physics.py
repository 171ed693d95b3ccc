"""Low-dose physics against theory, determinism per (seed, image, level), and bad levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_core.physics import PhysicsError, ProjectionDose, SinogramDose


@pytest.mark.parametrize("dose,mu", [(1000.0, 0.5), (300.0, 1.5), (5000.0, 2.5)])
def test_flat_phantom_variance_matches_poisson_theory(dose, mu):
    physics = ProjectionDose(seed=0, attenuation_scale=3.0, electronic_noise=0.0)
    flat = torch.full((4, 1, 64, 64), mu / 3.0, dtype=torch.float64)
    noisy = physics.degrade(flat, dose, [f"flat{i}" for i in range(4)])
    mu_hat = noisy.numpy() * 3.0
    expected_var = 1.0 / (dose * np.exp(-mu))  # delta method: Var(−log N/I0) ≈ 1/(I0 e^−μ)
    assert mu_hat.var() == pytest.approx(expected_var, rel=0.08)
    assert mu_hat.mean() == pytest.approx(mu, abs=0.02)


def test_electronic_noise_adds_variance():
    flat = torch.full((2, 1, 64, 64), 0.5, dtype=torch.float64)
    quiet = ProjectionDose(0, electronic_noise=0.0).degrade(flat, 300.0, ["a", "b"]).var()
    loud = ProjectionDose(0, electronic_noise=8.0).degrade(flat, 300.0, ["a", "b"]).var()
    counts = 300.0 * np.exp(-1.5)
    theory_ratio = (1 / counts + 64 / counts**2) / (1 / counts)
    assert float(loud / quiet) == pytest.approx(theory_ratio, rel=0.1)


def test_same_seed_same_image_and_batch_independent():
    images = torch.rand(6, 1, 32, 32)
    ids = [f"img{i}" for i in range(6)]
    a = ProjectionDose(seed=7).degrade(images, 1000.0, ids)
    b = ProjectionDose(seed=7).degrade(images, 1000.0, ids)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Degrading image 3 alone gives exactly the pixels it got inside the batch.
    single = ProjectionDose(seed=7).degrade(images[3:4], 1000.0, ids[3:4])
    torch.testing.assert_close(single[0], a[3], rtol=0, atol=0)
    other = ProjectionDose(seed=8).degrade(images, 1000.0, ids)
    assert not torch.equal(a, other)
    other_level = ProjectionDose(seed=7).degrade(images, 999.0, ids)
    assert not torch.equal(a, other_level)


def test_noise_falls_as_dose_rises_and_output_in_range():
    images = torch.rand(4, 1, 32, 32) * 0.8 + 0.1
    errors = []
    for dose in (100.0, 1000.0, 10000.0):
        out = ProjectionDose(seed=0).degrade(images, dose, list("abcd"))
        assert out.min() >= 0 and out.max() <= 1
        errors.append(float(((out - images) ** 2).mean()))
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("level", [0, -5.0, float("nan")])
def test_non_positive_level_is_an_error(level):
    with pytest.raises(PhysicsError, match="dose must be > 0"):
        ProjectionDose(seed=0).degrade(torch.rand(1, 1, 8, 8), level, ["x"])


def test_wrong_shape_is_an_error():
    with pytest.raises(PhysicsError, match=r"expected \(B, 1, H, W\)"):
        ProjectionDose(seed=0).degrade(torch.rand(2, 8, 8), 100.0, ["x", "y"])


def test_sinogram_model_reference_behaviour():
    weights = SinogramDose.bowtie(9)
    assert weights[0] == pytest.approx(0.05) and weights[4] == 1.0
    np.testing.assert_allclose(weights, weights[::-1])
    yy, xx = np.mgrid[0:32, 0:32]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100).astype(np.float32) * 0.6
    images = torch.from_numpy(np.stack([disc, disc])[:, None])
    physics = SinogramDose(seed=0, n_angles=64)
    low = physics.degrade(images, 300.0, ["a", "b"])
    high = physics.degrade(images, 1e6, ["a", "b"])
    assert ((low - images) ** 2).mean() > ((high - images) ** 2).mean()
    torch.testing.assert_close(low, physics.degrade(images, 300.0, ["a", "b"]), rtol=0, atol=0)
