"""Accelerated MRI: centred orthonormal 2D FFT → undersampling mask (→ optional noise) → inverse FFT → magnitude.

One definition of "magnitude" holds everywhere in Tandem: the modulus |z| of the complex image
(`magnitude` below). The reference code used the real part in one place and the modulus in
another; a test pins this one. The clean image is real and non-negative, as a magnitude slice.
The FFT is torch's with norm="ortho" between fftshift/ifftshift (centred k-space, DC at N//2,
as fastMRI's `fft2c`), so a full mask gives back the image exactly and Parseval holds.
"""

from __future__ import annotations

import torch

from recon_core.physics.base import Acquisition, LevelAxis, PhysicsError
from recon_core.physics.kspace_masks import make_mask, measured_acceleration
from recon_core.seeding import numpy_rng


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dims."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2D FFT over the last two dims."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=(-2, -1)), norm="ortho"),
                              dim=(-2, -1))


def magnitude(image: torch.Tensor) -> torch.Tensor:
    """The modulus |z| of a complex image (never its real part)."""
    return image.abs()


def data_consistency(image: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Puts the measured k-space samples back: k = (1 − m)·F(image) + m·y; returns the complex image F⁻¹(k)."""
    estimate = fft2c(image.to(kspace.dtype))
    return ifft2c(torch.where(mask, kspace, estimate))


class KspaceUndersampling(Acquisition):
    """Cartesian or radial k-space undersampling; level = acceleration (1 / sampled fraction, measured).

    One mask per (seed, kind, acceleration, image size), shared by every image of a study; the
    optional complex Gaussian noise is drawn per image from its own seed.
    """

    name = "mri_kspace"
    axis = LevelAxis("acceleration", "×", minimum=1.0, minimum_included=True, higher_is_worse=True,
                     note="1× = fully sampled")
    measures_kspace = True

    def __init__(self, seed: int, mask_kind: str = "radial", centre_fraction: float = 0.08,
                 snr: float | None = None) -> None:
        super().__init__(seed)
        self.mask_kind = mask_kind
        self.centre_fraction = centre_fraction
        self.snr = snr
        self._masks: dict[tuple[float, int], torch.Tensor] = {}

    def mask(self, level: float, size: int) -> torch.Tensor:
        """The (size, size) boolean mask of one acceleration (cached)."""
        level = self.check_level(level)
        if (level, size) not in self._masks:
            rng = numpy_rng(self.seed, "kspace-mask", self.mask_kind, f"{level:g}", size)
            self._masks[level, size] = torch.from_numpy(
                make_mask(self.mask_kind, size, level, self.centre_fraction, rng))
        return self._masks[level, size]

    def measured_acceleration(self, level: float, size: int) -> float:
        """1 / sampled fraction of the mask used at this level."""
        return measured_acceleration(self.mask(level, size).numpy())

    def _kspace(self, clean: torch.Tensor) -> torch.Tensor:
        """The fully sampled k-space of square images (PhysicsError otherwise)."""
        height, width = clean.shape[-2:]
        if height != width:
            raise PhysicsError(f"{self.name}: square images expected, got {height}×{width}")
        return fft2c(clean.to(torch.complex64))

    def _measure(self, clean: torch.Tensor, level: float, seeds: list[int]) -> torch.Tensor:
        kspace = self._kspace(clean)
        if self.snr is not None:  # complex Gaussian noise, std relative to the mean image intensity
            noise = torch.empty_like(kspace)
            for i, seed in enumerate(seeds):
                g = torch.Generator().manual_seed(seed)
                sigma = float(clean[i].mean()) / self.snr
                noise[i] = torch.complex(torch.randn(kspace.shape[1:], generator=g),
                                         torch.randn(kspace.shape[1:], generator=g)).to(clean.device) * sigma
            kspace = kspace + noise
        return self._undersampled(kspace, level)

    def _measure_batch(self, clean: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
        """Training draws: the whole batch's k-space noise at once from `generator`, on its device."""
        clean = clean.to(generator.device)
        kspace = self._kspace(clean)
        if self.snr is not None:
            sigma = clean.mean((1, 2, 3), keepdim=True) / self.snr
            draws = torch.randn((2, *kspace.shape), generator=generator, device=kspace.device)
            kspace = kspace + torch.complex(draws[0], draws[1]) * sigma
        return self._undersampled(kspace, level)

    def _undersampled(self, kspace: torch.Tensor, level: float) -> torch.Tensor:
        """k-space with the samples this level's mask leaves out set to zero."""
        mask = self.mask(level, kspace.shape[-1]).to(kspace.device)
        return torch.where(mask, kspace, torch.zeros_like(kspace))

    def to_image(self, measurement: torch.Tensor, level: float) -> torch.Tensor:
        """Zero-filled reconstruction: magnitude of the inverse FFT, clipped to [0, 1]."""
        return magnitude(ifft2c(measurement)).clamp(0, 1).float()

    def consistent(self, image: torch.Tensor, measurement: torch.Tensor, level: float) -> torch.Tensor:
        """A reconstruction made consistent with the measured samples, as a magnitude image in [0, 1]."""
        mask = self.mask(level, image.shape[-1]).to(image.device)
        return magnitude(data_consistency(image, measurement, mask)).clamp(0, 1).float()
