"""`unet`: MONAI's UNet predicting the residual, trained with MSE on (degraded, clean) pairs.

One network covers every dose level of the study: each training image is degraded on the fly
at a level drawn from the study's levels, so the same weights serve the whole sweep and a
level never seen in training is not silently favoured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import UNet

from recon_core.config import GANConfig, UNetConfig, stable_hash
from recon_core.models.batches import SplitData
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import ImageLoss
from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import FineTuning, NetworkReconstructor
from recon_core.seeding import seeded_torch


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

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        cfg = self.config.reconstructors.unet
        batches = data.degraded_sampler(self.config.physics.levels, self.config.seed, "unet-train", cfg.batch_size,
                                        self.device)
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.steps)
        return TrainingPlan(cfg.steps, batches, [Objective(lambda b: self.net(b.degraded), ImageLoss("mse"),
                                                           optimiser, schedule)], [self.net], self.device)

    def fine_tuning(self) -> FineTuning:
        """The residual U-Net on the degraded input, MSE: as it was trained."""
        return FineTuning(self.net, lambda b: self.net(b.degraded), ImageLoss("mse"), self.arch)

    @torch.no_grad()
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        out = self.net(degraded.to(self.device)).clamp(0, 1).to(degraded.device)
        return self.consistent(out, physics, level, measurement, self.config.reconstructors.unet.data_consistency)
