"""`diffusion`: a conditional denoising diffusion model, sampled with MONAI's DDIM scheduler.

The degraded image y is an input channel beside the noisy sample x_t (Saharia et al.'s SR3 /
Palette conditioning). Two parameterisations (`prediction`):
- 'epsilon' (the default, the standard DDPM objective): the network predicts the noise ε in
  x_t and is trained on ‖ε̂ − ε‖²; the sampler derives x̂₀ = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t;
- 'sample': the network predicts the clean image as a residual on y, x̂₀ = y + α·f(x_t, y, t)
  (α from 0, ReZero), trained on ‖x̂₀ − x₀‖². The CPU demos use it: at their 600 training steps
  noise prediction gives unusable samples (≈ 8 dB PSNR on the X-ray demo against 25–40 dB for
  this one), because x̂₀ derived from ε̂ amplifies its errors by 1/√ᾱ_t.
Either way the sampler hands MONAI's DDIM scheduler x̂₀, so on MRI each step's x̂₀ is made
consistent with the measured k-space before the step (η = 0, so the update is exact). Networks:
- 'unet' (CPU): a MONAI UNet whose third input channel is the timestep t / T as a constant map,
  the way restoration diffusion models feed the noise level;
- 'diffusion_unet' (GPU): MONAI's DiffusionModelUNet with sinusoidal timestep embeddings.
Each image's starting noise comes from its own seed (study seed, image id, level, sample
number), so a sample never depends on batching and every sample is reproducible. With
`n_samples` > 1 the reconstruction is the posterior mean and the per-pixel standard deviation
is kept as an uncertainty map. The runner caches outputs (`cache_outputs`): sampling is the
expensive part of a sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import DiffusionModelUNet, UNet
from monai.networks.schedulers import DDIMScheduler

from recon_core.config import stable_hash
from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import DenoisingLoss
from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import NetworkReconstructor
from recon_core.seeding import derive_seed, seeded_torch


class DiffusionNet(torch.nn.Module):
    """f(x_t, y, t) in [−1, 1] image units: ε̂, or x̂₀ = y + α·f for `prediction: sample`.

    f is a UNet with a t-map channel or a DiffusionModelUNet. For x̂₀, α starts at 0 (ReZero, as
    the `unet` reconstructor): before training the estimate is the degraded image itself.
    """

    def __init__(self, network: str, channels: tuple[int, ...], train_timesteps: int, prediction: str) -> None:
        super().__init__()
        self.network = network
        self.train_timesteps = train_timesteps
        self.alpha = torch.nn.Parameter(torch.zeros(1)) if prediction == "sample" else None
        if network == "unet":
            self.body = UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=channels,
                             strides=(2,) * (len(channels) - 1), num_res_units=1)
        else:
            # its middle block always attends over every position: fused attention (torch's SDPA) keeps
            # memory linear in the positions (gpu.yaml's einsum asked for 32 GiB at 256 px, batch 32)
            self.body = DiffusionModelUNet(spatial_dims=2, in_channels=2, out_channels=1, channels=channels,
                                           attention_levels=(False,) * len(channels), num_res_blocks=1,
                                           norm_num_groups=min(channels[0], 32), use_flash_attention=True)

    def forward(self, noisy: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.network == "unet":
            t_map = (timesteps.float() / self.train_timesteps).view(-1, 1, 1, 1).expand_as(noisy)
            out = self.body(torch.cat([noisy, condition, t_map], 1))
        else:
            out = self.body(torch.cat([noisy, condition], 1), timesteps)
        return out if self.alpha is None else condition + self.alpha * out


class Diffusion(NetworkReconstructor):
    """Conditional diffusion restoration; DDIM sampling with `sampling_steps` steps."""

    name = "diffusion"
    cache_outputs = True

    def __init__(self, config, device) -> None:
        super().__init__(config, device)
        cfg = config.reconstructors.diffusion
        self.arch = {"net": f"conditional diffusion ({cfg.network}, predicts {cfg.prediction})",
                     "channels": list(cfg.channels), "train_timesteps": cfg.train_timesteps}
        with seeded_torch(config.seed, "diffusion-init"):
            self.net = DiffusionNet(cfg.network, cfg.channels, cfg.train_timesteps, cfg.prediction).to(device)
        # The sampler always hands the scheduler x̂₀ (made data-consistent on MRI), hence "sample".
        self.scheduler = DDIMScheduler(num_train_timesteps=cfg.train_timesteps, schedule=cfg.schedule,
                                       prediction_type="sample", clip_sample=True)

    def weights_key(self) -> str:
        c = self.config
        d = c.reconstructors.diffusion
        trained = (d.network, d.prediction, d.channels, d.train_timesteps, d.schedule, d.steps, d.batch_size,
                   d.learning_rate)
        return stable_hash("diffusion", self.arch, c.cohort, c.physics, trained, c.seed)

    def cache_key(self) -> str:
        d, precision = self.config.reconstructors.diffusion, self.config.evaluation.precision
        parts = (self.weights_key(), d.sampling_steps, d.n_samples, d.data_consistency)
        return stable_hash(*parts, *(() if precision == "float32" else (precision,)))  # float32 keys unchanged

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        cfg = self.config.reconstructors.diffusion
        batches = data.degraded_sampler(self.config.physics.levels, self.config.seed, "diffusion-train",
                                        cfg.batch_size, self.device)
        generator = torch.Generator(self.device).manual_seed(derive_seed(self.config.seed, "diffusion-noise"))
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.steps)
        return TrainingPlan(cfg.steps, batches, [Objective(lambda b: self.denoise(b, generator), DenoisingLoss(),
                                                           optimiser, schedule)], [self.net], self.device)

    def denoise(self, batch: TrainingBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """(prediction, target) at a random t: ε̂(x_t, y, t) and ε (noise prediction), or x̂₀ and x₀ (sample).

        t and ε come from `generator` on its own device (the model's, in training: no host round trip).
        """
        where = generator.device if generator is not None else self.device
        x0, condition = batch.images.to(where) * 2 - 1, batch.degraded.to(where) * 2 - 1
        t = torch.randint(0, self.scheduler.num_train_timesteps, (len(x0),), generator=generator, device=where)
        noise = torch.randn(x0.shape, generator=generator, device=where)
        noisy = self.scheduler.add_noise(x0, noise, t)
        target = noise if self.config.reconstructors.diffusion.prediction == "epsilon" else x0
        return self.net(noisy.to(self.device), condition.to(self.device), t.to(self.device)), target.to(self.device)

    def _starting_noise(self, shape: tuple[int, ...], image_ids: Sequence[str], level: float,
                        draws: Sequence[int]) -> torch.Tensor:
        """Each image's own starting noise, seeded by (study seed, image id, level, draw number)."""
        return torch.stack([torch.randn(shape[1:], generator=torch.Generator().manual_seed(
            derive_seed(self.config.seed, "diffusion-sample", image_id, f"{level:g}", k)))
            for image_id, k in zip(image_ids, draws, strict=True)])

    @torch.no_grad()
    def sample(self, degraded: torch.Tensor, physics: Acquisition, level: float, measurement: torch.Tensor | None,
               image_ids: Sequence[str], draws: Sequence[int] | None = None) -> torch.Tensor:
        """One posterior sample per image (image i's draws[i]-th, default the 0th), in [0, 1], on degraded's device."""
        cfg = self.config.reconstructors.diffusion
        self.net.eval()
        condition = degraded.to(self.device) * 2 - 1
        draws = [0] * len(image_ids) if draws is None else draws
        x = self._starting_noise(tuple(degraded.shape), image_ids, level, draws).to(self.device)
        consistent = cfg.data_consistency and measurement is not None
        self.scheduler.set_timesteps(cfg.sampling_steps)
        signal = self.scheduler.alphas_cumprod.to(self.device)  # ᾱ_t
        estimate = condition
        for t in (int(step) for step in self.scheduler.timesteps):
            out = self.net(x, condition, torch.full((len(x),), t, device=self.device))
            if cfg.prediction == "epsilon":
                out = (x - (1 - signal[t]).sqrt() * out) / signal[t].sqrt()
            estimate = out.clamp(-1, 1)
            if consistent:  # the clean-image estimate agrees with the measured k-space samples
                image = physics.consistent(((estimate + 1) / 2).to(degraded.device), measurement, level)
                estimate = image.to(self.device) * 2 - 1
            x, _ = self.scheduler.step(estimate, t, x)
        return ((estimate + 1) / 2).clamp(0, 1).to(degraded.device)

    def reconstruct_samples(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                            measurement: torch.Tensor | None = None,
                            image_ids: Sequence[str] | None = None) -> torch.Tensor:
        if image_ids is None:
            raise ValueError("diffusion: image ids are needed to seed each image's sample")
        n = self.config.reconstructors.diffusion.n_samples

        def repeated(t: torch.Tensor | None) -> torch.Tensor | None:  # all n draws in one batch
            return None if t is None else t.repeat(n, *([1] * (t.ndim - 1)))

        draws = [k for k in range(n) for _ in image_ids]
        samples = self.sample(repeated(degraded), physics, level, repeated(measurement), list(image_ids) * n, draws)
        return samples.view(n, *degraded.shape)

    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        return self.reconstruct_samples(degraded, physics, level, measurement, image_ids).mean(0)
