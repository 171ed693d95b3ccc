"""MRI acquisition: exact FFT round trip, one meaning of magnitude, masks named by their real acceleration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon_core.config import ConfigError
from recon_core.config_loader import from_dict
from recon_core.modalities.mri import MRI
from recon_core.physics import KspaceUndersampling, PhysicsError
from recon_core.physics.kspace_masks import KINDS, make_mask, measured_acceleration
from recon_core.physics.mri_kspace import data_consistency, fft2c, ifft2c, magnitude


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g)


def test_fft_round_trip_is_exact_with_a_full_mask():
    x = images()
    assert torch.allclose(ifft2c(fft2c(x.to(torch.complex64))).real, x, atol=1e-6)
    physics = KspaceUndersampling(seed=0, mask_kind="cartesian_random")
    full = physics.degrade(x, 1.0, ["a", "b", "c"])
    assert torch.allclose(full, x, atol=1e-6)
    k = fft2c(x.to(torch.complex64))  # orthonormal: energy is preserved (Parseval)
    assert torch.allclose((k.abs() ** 2).sum((-2, -1)), (x ** 2).sum((-2, -1)), rtol=1e-5)


def test_magnitude_is_the_modulus_never_the_real_part():
    x = images(1)
    rotated = x.to(torch.complex64) * torch.exp(torch.tensor(2.0j))  # same modulus, real part x·cos(2) < 0
    assert torch.allclose(magnitude(rotated), x, atol=1e-6)
    physics = KspaceUndersampling(seed=0)
    seen = physics.to_image(fft2c(rotated), 1.0)
    assert torch.allclose(seen, x, atol=1e-5)  # the real part would be negative and clip to 0
    assert not torch.allclose(rotated.real.clamp(0, 1), x, atol=1e-2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("acceleration", [2, 4, 8, 16])
def test_each_mask_has_the_acceleration_it_is_named_by(kind, acceleration):
    for size in (48, 128):
        mask = make_mask(kind, size, acceleration, 0.08, np.random.default_rng(1))
        assert mask.shape == (size, size) and mask.dtype == bool
        assert math.isclose(measured_acceleration(mask), acceleration, rel_tol=0.05), (kind, size)
        assert mask[size // 2, size // 2]  # the centre of k-space is always sampled


def test_cartesian_masks_keep_the_centre_lines_and_radial_is_dense_at_the_centre():
    random = make_mask("cartesian_random", 64, 8, 0.08, np.random.default_rng(0))
    assert (random.all(axis=0)[30:35]).all() and (random == random[0]).all()  # whole columns
    radial = make_mask("radial", 64, 8, 0.08, np.random.default_rng(0))
    assert radial[24:40, 24:40].mean() > 3 * radial[:16, :16].mean()


def test_masks_are_deterministic_per_seed_and_differ_between_seeds():
    a = KspaceUndersampling(seed=3, mask_kind="cartesian_random").mask(4.0, 64)
    b = KspaceUndersampling(seed=3, mask_kind="cartesian_random").mask(4.0, 64)
    c = KspaceUndersampling(seed=4, mask_kind="cartesian_random").mask(4.0, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_data_consistency_leaves_sampled_kspace_unchanged():
    x = images(2, 48)
    physics = KspaceUndersampling(seed=0)
    measured = physics.measure(x, 8.0, ["a", "b"])
    mask = physics.mask(8.0, 48)
    guess = torch.rand(2, 1, 48, 48)  # any estimate, e.g. a network's output
    out = data_consistency(guess, measured, mask)
    k = fft2c(out)
    assert torch.allclose(k[..., mask], measured[..., mask], atol=1e-5)
    assert torch.allclose(k[..., ~mask], fft2c(guess.to(torch.complex64))[..., ~mask], atol=1e-5)


def test_undersampling_degrades_more_as_acceleration_rises():
    x = images(4, 64)
    physics = KspaceUndersampling(seed=0)
    errors = [float(((physics.degrade(x, a, list("abcd")) - x) ** 2).mean()) for a in (2, 4, 8, 16)]
    assert errors == sorted(errors) and errors[0] > 0


def test_noise_is_seeded_per_image():
    x = images(2, 32)
    physics = KspaceUndersampling(seed=0, snr=20.0)
    one = physics.measure(x, 4.0, ["a", "b"])
    again = physics.measure(x[1:], 4.0, ["b"])
    assert torch.equal(one[1:], again)
    assert not torch.equal(physics.measure(x, 4.0, ["a", "c"])[1], one[1])


def test_acceleration_below_one_is_a_clear_error():
    with pytest.raises(PhysicsError, match=r"acceleration must be ≥ 1.*0.5"):
        KspaceUndersampling(seed=0).degrade(images(1), 0.5, ["a"])
    with pytest.raises(ConfigError, match=r"physics.levels: acceleration level 0.5 must be ≥ 1"):
        from_dict({"modality": MRI.name, "physics": {"model": "kspace", "levels": [4, 0.5]},
                   "cohort": {"anatomy": "procedural", "prevalence": {"high_grade": 0.5}},
                   "reconstructors": {"names": ["zero_filled"]}})
    with pytest.raises(ConfigError, match=r"'projection' does not fit modality 'mri'"):
        from_dict({"modality": MRI.name, "cohort": {"anatomy": "procedural"}})
