"""`gan`: pix2pix — a residual MONAI UNet generator against MONAI's PatchGAN discriminator.

Loss: L1 (weighted `l1_weight`, heavy as in the reference study) + the adversarial loss of the
discriminator on (degraded, output) pairs (MONAI `PatchAdversarialLoss`, least squares);
Adam with β1 = 0.5, the learning rate constant for the first half of training and decaying
linearly to zero over the second (pix2pix's schedule). Trained across all levels of the study
like the U-Net, so one generator serves the sweep. A generative model can hallucinate structure
that scores well on PSNR: this is what the tandem evaluation is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator

from recon_core.checkpoints import save_checkpoint
from recon_core.config import stable_hash
from recon_core.physics.base import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors.base import NetworkReconstructor
from recon_core.reconstructors.unet_denoiser import residual_unet, training_pairs
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
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")
        betas = (0.5, 0.999)
        self.g_optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate, betas=betas)
        self.d_optimiser = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.learning_rate, betas=betas)

    def weights_key(self) -> str:
        c = self.config
        return stable_hash("gan", c.cohort, c.physics, c.reconstructors.gan, c.seed)

    def discriminator_loss(self, degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Least-squares PatchGAN loss: real (y, x) pairs → 1, generated (y, G(y)) pairs → 0."""
        with torch.no_grad():
            fake = self.net(degraded)
        real_logits = self.discriminator(torch.cat([degraded, clean], 1))[-1]
        fake_logits = self.discriminator(torch.cat([degraded, fake], 1))[-1]
        return 0.5 * (self.adversarial(real_logits, target_is_real=True, for_discriminator=True)
                      + self.adversarial(fake_logits, target_is_real=False, for_discriminator=True))

    def generator_loss(self, degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """l1_weight · |G(y) − x| + adversarial loss of (y, G(y)) judged real."""
        fake = self.net(degraded)
        logits = self.discriminator(torch.cat([degraded, fake], 1))[-1]
        adversarial = self.adversarial(logits, target_is_real=True, for_discriminator=False)
        return self.config.reconstructors.gan.l1_weight * torch.nn.functional.l1_loss(fake, clean) + adversarial

    def step_discriminator(self, degraded: torch.Tensor, clean: torch.Tensor) -> float:
        """One Adam step of the discriminator; returns its loss before the step."""
        loss = self.discriminator_loss(degraded, clean)
        self.d_optimiser.zero_grad()
        loss.backward()
        self.d_optimiser.step()
        return float(loss.detach())

    def step_generator(self, degraded: torch.Tensor, clean: torch.Tensor) -> float:
        """One Adam step of the generator (discriminator fixed); returns its loss before the step."""
        loss = self.generator_loss(degraded, clean)
        self.g_optimiser.zero_grad()
        loss.backward()
        self.g_optimiser.step()
        return float(loss.detach())

    def fit(self, clean, physics: Acquisition, checkpoint_dir: Path, progress: Progress = silent) -> None:
        if self.checkpoint_path(checkpoint_dir).exists():
            self.load(checkpoint_dir)
            return
        cfg = self.config.reconstructors.gan
        pairs = training_pairs(clean, physics, self.config, "gan-train", cfg.batch_size)
        half = cfg.steps / 2
        schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (cfg.steps - step) / half))
                     for opt in (self.g_optimiser, self.d_optimiser)]
        self.net.train()
        self.discriminator.train()
        for step in range(cfg.steps):
            noisy, target = (t.to(self.device) for t in pairs(step))
            self.step_discriminator(noisy, target)
            self.step_generator(noisy, target)
            for schedule in schedules:
                schedule.step()
            if step % 20 == 0 or step == cfg.steps - 1:
                progress("training gan", step + 1, cfg.steps)
        self.net.eval()
        save_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)

    @torch.no_grad()
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        self.net.eval()
        out = self.net(degraded.to(self.device)).clamp(0, 1).to(degraded.device)
        if self.config.reconstructors.gan.data_consistency and measurement is not None:
            out = physics.consistent(out, measurement, level)
        return out
