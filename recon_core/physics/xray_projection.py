"""Low-dose radiography in the projection domain: Poisson photon counting plus electronic noise.

Model (per pixel): the image x ∈ [0, 1] is a line integral of attenuation μ = s·x. A detector
pixel expecting I0·e^(−μ) photons counts N ~ Poisson(I0·e^(−μ)) + Normal(0, σ_e²); the log
transform μ̂ = −log(N / I0) gives back attenuation. For large counts Var(μ̂) ≈ 1/(I0·e^(−μ)) +
σ_e²/(I0·e^(−μ))² (delta method). Counts below 0.5 are clamped before the log (a detector
never reports ≤ 0), and the result is clipped to [0, 1], the data range of every metric.
"""

from __future__ import annotations

import torch

from recon_core.physics.base import Acquisition, LevelAxis


class ProjectionDose(Acquisition):
    """Projection-domain low-dose model; level = incident photons per pixel (I0)."""

    name = "xray_projection"
    axis = LevelAxis("dose", "photons/pixel", minimum=0.0, minimum_included=False, higher_is_worse=False)

    def __init__(self, seed: int, attenuation_scale: float = 3.0, electronic_noise: float = 2.0) -> None:
        super().__init__(seed)
        self.attenuation_scale = attenuation_scale
        self.electronic_noise = electronic_noise

    def expected_counts(self, clean: torch.Tensor, level: float) -> torch.Tensor:
        """Mean photon count per pixel, I0·e^(−μ)."""
        return level * torch.exp(-self.attenuation_scale * clean)

    def log_transform(self, counts: torch.Tensor, level: float) -> torch.Tensor:
        """Counts back to image units, μ̂ / s, unclipped."""
        return -torch.log(counts.clamp_min(0.5) / level) / self.attenuation_scale

    def _measure(self, clean: torch.Tensor, level: float, seeds: list[int]) -> torch.Tensor:
        expected = self.expected_counts(clean.detach().to("cpu", torch.float64), level)
        noisy = torch.empty_like(expected)
        for i, seed in enumerate(seeds):  # one generator per image: batching-independent draws
            gen = torch.Generator().manual_seed(seed)
            counts = torch.poisson(expected[i], generator=gen)
            if self.electronic_noise > 0:
                counts += self.electronic_noise * torch.randn(counts.shape, generator=gen, dtype=counts.dtype)
            noisy[i] = counts
        image = self.log_transform(noisy, level).clamp(0, 1)
        return image.to(clean.device, clean.dtype)

    def _measure_batch(self, clean: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
        """Training draws in float32 on the generator's device, the whole batch at once."""
        expected = self.expected_counts(clean.detach().to(generator.device, torch.float32), level)
        counts = torch.poisson(expected, generator=generator)
        if self.electronic_noise > 0:
            counts += self.electronic_noise * torch.randn(counts.shape, generator=generator, device=counts.device)
        return self.log_transform(counts, level).clamp(0, 1).to(clean.dtype)
