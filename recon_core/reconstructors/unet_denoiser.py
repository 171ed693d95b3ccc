"""`unet`: MONAI's UNet predicting the residual, trained with MSE on (degraded, clean) pairs.

One network covers every dose level of the study: each training image is degraded on the fly
at a level drawn from the study's levels, so the same weights serve the whole sweep and a
level never seen in training is not silently favoured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import UNet

from recon_core.checkpoints import save_checkpoint
from recon_core.config import GANConfig, UNetConfig, stable_hash
from recon_core.physics.base import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors.base import NetworkReconstructor
from recon_core.seeding import numpy_rng, seeded_torch
from recon_core.training import optimise


class Residual(torch.nn.Module):
    """y + α·f(y) with α starting at 0 (ReZero): training starts from the identity, never worse."""

    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body
        self.alpha = torch.nn.Parameter(torch.zeros(1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.alpha * self.body(y)


def residual_unet(cfg: UNetConfig | GANConfig) -> Residual:
    """y + α·UNet(y) with the config's channels, strides and residual units (the U-Net and the GAN generator)."""
    return Residual(UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=cfg.channels, strides=cfg.strides,
                         num_res_units=cfg.num_res_units))


def training_pairs(clean: np.ndarray, physics: Acquisition, config, stream: str,
                   batch_size: int) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """step → (degraded, clean) batch: random training images degraded on the fly at a random study level.

    Seeded by (study seed, stream); also seeds torch's global generator for draws made while training.
    """
    levels = config.physics.levels
    rng = numpy_rng(config.seed, stream)
    torch.manual_seed(int(rng.integers(2**31)))

    def pairs(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = rng.integers(0, len(clean), batch_size)
        target = torch.from_numpy(clean[idx][:, None])
        level = float(levels[int(rng.integers(len(levels)))])
        ids = [f"train-{step}-{i}" for i in range(batch_size)]
        return physics.degrade(target, level, ids), target

    return pairs


class UNetDenoiser(NetworkReconstructor):
    """Residual MONAI UNet denoiser: x̂ = clip(y + α·f(y), 0, 1)."""

    name = "unet"

    def __init__(self, config, device) -> None:
        super().__init__(config, device)
        cfg = config.reconstructors.unet
        self.arch = {"net": "residual monai.UNet", "channels": list(cfg.channels), "strides": list(cfg.strides),
                     "num_res_units": cfg.num_res_units}
        with seeded_torch(config.seed, "unet-init"):
            self.net = residual_unet(cfg).to(device)

    def weights_key(self) -> str:
        c = self.config
        return stable_hash("unet", c.cohort, c.physics, c.reconstructors.unet, c.seed)

    def fit(self, clean: np.ndarray, physics: Acquisition, checkpoint_dir: Path,
            progress: Progress = silent) -> None:
        if self.checkpoint_path(checkpoint_dir).exists():
            self.load(checkpoint_dir)
            return
        path = self.checkpoint_path(checkpoint_dir)
        cfg = self.config.reconstructors.unet
        pairs = training_pairs(clean, physics, self.config, "unet-train", cfg.batch_size)

        def batch_loss(step: int) -> torch.Tensor:
            noisy, target = pairs(step)
            return torch.nn.functional.mse_loss(self.net(noisy.to(self.device)), target.to(self.device))

        optimise(self.net, cfg.steps, cfg.learning_rate, batch_loss, progress, "training unet")
        save_checkpoint(path, self.net, self.arch)

    @torch.no_grad()
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        out = self.net(degraded.to(self.device)).clamp(0, 1).to(degraded.device)
        if self.config.reconstructors.unet.data_consistency and measurement is not None:
            out = physics.consistent(out, measurement, level)
        return out
