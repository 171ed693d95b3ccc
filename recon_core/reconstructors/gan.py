"""`gan`: pix2pix — a residual MONAI UNet generator against MONAI's PatchGAN discriminator.

Loss: L1 (weighted `l1_weight`, heavy as in the reference study) + the adversarial loss of the
discriminator on (degraded, output) pairs (MONAI `PatchAdversarialLoss`, least squares);
Adam with β1 = 0.5, the learning rate constant for the first half of training and decaying
linearly to zero over the second (pix2pix's schedule). Trained across all levels of the study
like the U-Net, so one generator serves the sweep. A generative model can hallucinate structure
that scores well on PSNR: this is what the tandem evaluation is for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import PatchDiscriminator

from recon_core.config import stable_hash
from recon_core.models.batches import SplitData
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import DiscriminatorLoss, GeneratorAdversarialLoss, ImageLoss
from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import FineTuning, NetworkReconstructor
from recon_core.reconstructors.unet_denoiser import residual_unet
from recon_core.seeding import seeded_torch


class GAN(NetworkReconstructor):
    """pix2pix generator x̂ = clip(y + α·G(y), 0, 1), trained against a PatchGAN on (y, x) pairs."""

    name = "gan"

    def __init__(self, config, device) -> None:
        super().__init__(config, device)
        cfg = config.reconstructors.gan
        self.arch = {"net": "pix2pix residual monai.UNet", "channels": list(cfg.channels),
                     "strides": list(cfg.strides), "num_res_units": cfg.num_res_units}
        with seeded_torch(config.seed, "gan-init"):
            self.net = residual_unet(cfg).to(device)
            self.discriminator = PatchDiscriminator(spatial_dims=2, channels=cfg.disc_channels, in_channels=2,
                                                    out_channels=1, num_layers_d=cfg.disc_layers).to(device)

    def weights_key(self) -> str:
        c = self.config
        return stable_hash("gan", c.cohort, c.physics, c.reconstructors.gan, c.seed)

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        """Each step: one discriminator step on the generator's current output, then one generator step."""
        cfg = self.config.reconstructors.gan
        batches = data.degraded_sampler(self.config.physics.levels, self.config.seed, "gan-train", cfg.batch_size,
                                        self.device)
        betas = (0.5, 0.999)

        def generated(batch) -> torch.Tensor:
            with torch.no_grad():
                return self.net(batch.degraded)

        d_optimiser, d_schedule = adam(self.discriminator, cfg.learning_rate, cfg.steps, "linear_decay", betas)
        g_optimiser, g_schedule = adam(self.net, cfg.learning_rate, cfg.steps, "linear_decay", betas)
        generator_loss = cfg.l1_weight * ImageLoss("l1") + GeneratorAdversarialLoss(self.discriminator)
        return TrainingPlan(cfg.steps, batches, [
            Objective(generated, DiscriminatorLoss(self.discriminator), d_optimiser, d_schedule),
            Objective(lambda b: self.net(b.degraded), generator_loss, g_optimiser, g_schedule),
        ], [self.net, self.discriminator], self.device)

    def fine_tuning(self) -> FineTuning:
        """The generator alone with its L1 term (the discriminator is not kept with the weights)."""
        return FineTuning(self.net, lambda b: self.net(b.degraded), ImageLoss("l1"), self.arch)

    @torch.no_grad()
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        self.net.eval()
        out = self.net(degraded.to(self.device)).clamp(0, 1).to(degraded.device)
        return self.consistent(out, physics, level, measurement, self.config.reconstructors.gan.data_consistency)
