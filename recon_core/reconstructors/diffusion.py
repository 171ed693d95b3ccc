"""`diffusion`: a conditional denoising diffusion model on MONAI's noise schedules, sampled by DDIM.

The degraded image y is an input channel beside the noisy sample x_t (Saharia et al.'s SR3 /
Palette conditioning). Three parameterisations (`prediction`):
- 'epsilon' (the standard DDPM objective): the network predicts the noise ε in x_t, trained on
  ‖ε̂ − ε‖²; x̂₀ = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t;
- 'v' (Salimans & Ho): it predicts v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀, trained on ‖v̂ − v‖²;
  x̂₀ = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂, which tends to x_t as t → 0, so a sample keeps what the
  chain's noise made of it instead of collapsing onto the network's mean;
- 'sample': it predicts the clean image as a residual on y, x̂₀ = y + α·f(x_t, y, t) (α from 0,
  ReZero), trained on ‖x̂₀ − x₀‖². Trained by MSE it learns E[x₀ | y] and may ignore x_t: with
  η = 0 its samples barely differ (the old CPU demos: a spread of 3·10⁻⁴ against an error of 0.06).
Where sampling starts (`start`):
- 'noise': x_T ~ N(0, I) and `sampling_steps` DDIM steps over the whole schedule (SR3);
- 'degraded' (SDEdit, and the reference's IR-SDE in spirit: start from the measurement):
  x_{t₀} = √ᾱ_{t₀}·y + √(1−ᾱ_{t₀})·ε with t₀ = `start_fraction`·(T − 1), then the steps from t₀
  down; training draws t in [0, t₀] only, so the whole budget goes where sampling happens;
- 'matched': as 'degraded' (the same training and weights), but each image starts at its own
  t₀ ≤ `start_fraction`·(T − 1), where the chain's noise √((1−ᾱ)/ᾱ) is `MATCH` times the
  noise estimated in y (scikit-image's wavelet estimate): a cleaner measurement starts lower,
  so less noise is injected where less is uncertain.
Each step is DDIM's update (Song et al., eq. 12) with η = `eta`: x_{t'} = √ᾱ_{t'}·x̂₀ +
√(1−ᾱ_{t'}−σ²)·ε̂ + σ·z, σ = η·√((1−ᾱ_{t'})/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_{t'}); η = 1 is ancestral DDPM
sampling. Written here rather than MONAI's `DDIMScheduler.step` because z must come from each
image's own generator (MONAI's step draws the whole batch from one) and because MONAI's step
goes to t − T/n, not the next timestep of its own linspace. On MRI each step's x̂₀ is made
consistent with the measured k-space before the step, so every sample keeps the measured
frequencies exactly and differs only in the unmeasured ones. Networks:
- 'unet' (CPU): a MONAI UNet whose third input channel is the timestep t / T as a constant map,
  the way restoration diffusion models feed the noise level;
- 'diffusion_unet' (GPU): MONAI's DiffusionModelUNet with sinusoidal timestep embeddings.
Each image's noise (the start and every step's z) comes from its own generator seeded by
(study seed, image id, level, sample number), so a sample never depends on batching and every
sample is reproducible. `reconstruct_samples` returns `n_samples` draws; the runner keeps their
mean and per-pixel std (the uncertainty map) and caches them (`cache_outputs`): sampling is the
expensive part of a sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import DiffusionModelUNet, UNet
from monai.networks.schedulers import DDIMScheduler
from skimage.restoration import estimate_sigma

from recon_core.config import DIFFUSION_SAMPLER, stable_hash
from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import DenoisingLoss
from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import NetworkReconstructor
from recon_core.seeding import derive_seed, seeded_torch


class DiffusionNet(torch.nn.Module):
    """f(x_t, y, t) in [−1, 1] image units: ε̂, v̂, or x̂₀ = y + α·f for `prediction: sample`.

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


MATCH = 2.0
"""'matched' start: the chain's starting noise level over the noise estimated in the degraded image."""


class Diffusion(NetworkReconstructor):
    """Conditional diffusion restoration; `sampling_steps` DDIM steps (η = `eta`) from noise or the degraded image."""

    name = "diffusion"
    cache_outputs = True

    def __init__(self, config, device) -> None:
        super().__init__(config, device)
        cfg = config.reconstructors.diffusion
        self.arch = {"net": f"conditional diffusion ({cfg.network}, predicts {cfg.prediction})",
                     "channels": list(cfg.channels), "train_timesteps": cfg.train_timesteps}
        with seeded_torch(config.seed, "diffusion-init"):
            self.net = DiffusionNet(cfg.network, cfg.channels, cfg.train_timesteps, cfg.prediction).to(device)
        # the noise schedule (ᾱ_t, forward noising, v targets); the reverse update is `_step`'s
        self.scheduler = DDIMScheduler(num_train_timesteps=cfg.train_timesteps, schedule=cfg.schedule,
                                       prediction_type="sample", clip_sample=True)

    def _start_settings(self) -> tuple:
        """What the start changes in training: t's range for 'degraded' and 'matched' (alike), nothing from noise.

        Empty from noise, so the weights keys of configs without the start settings stay as they were.
        """
        d = self.config.reconstructors.diffusion
        return () if d.start == "noise" else ("degraded", d.start_fraction)

    def weights_key(self) -> str:
        c = self.config
        d = c.reconstructors.diffusion
        trained = (d.network, d.prediction, d.channels, d.train_timesteps, d.schedule, d.steps, d.batch_size,
                   d.learning_rate, *self._start_settings())
        return stable_hash("diffusion", self.arch, c.cohort, c.physics, trained, c.seed)

    def cache_key(self) -> str:
        d, precision = self.config.reconstructors.diffusion, self.config.evaluation.precision
        parts = (self.weights_key(), d.sampling_steps, d.n_samples, d.data_consistency, DIFFUSION_SAMPLER, d.eta,
                 d.start)
        return stable_hash(*parts, *(() if precision == "float32" else (precision,)))

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        cfg = self.config.reconstructors.diffusion
        batches = data.degraded_sampler(self.config.physics.levels, self.config.seed, "diffusion-train",
                                        cfg.batch_size, self.device)
        generator = torch.Generator(self.device).manual_seed(derive_seed(self.config.seed, "diffusion-noise"))
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.steps)
        return TrainingPlan(cfg.steps, batches, [Objective(lambda b: self.denoise(b, generator), DenoisingLoss(),
                                                           optimiser, schedule)], [self.net], self.device)

    def denoise(self, batch: TrainingBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """(prediction, target) at a random t in [0, t₀]: ε̂ and ε, v̂ and v, or x̂₀ and x₀, as `prediction` says.

        t and ε come from `generator` on its own device (the model's, in training: no host round trip).
        """
        cfg = self.config.reconstructors.diffusion
        where = generator.device if generator is not None else self.device
        x0, condition = batch.images.to(where) * 2 - 1, batch.degraded.to(where) * 2 - 1
        t = torch.randint(0, cfg.start_timestep() + 1, (len(x0),), generator=generator, device=where)
        noise = torch.randn(x0.shape, generator=generator, device=where)
        noisy = self.scheduler.add_noise(x0, noise, t)
        target = {"epsilon": noise, "sample": x0, "v": self.scheduler.get_velocity(x0, noise, t)}[cfg.prediction]
        return self.net(noisy.to(self.device), condition.to(self.device), t.to(self.device)), target.to(self.device)

    def _generators(self, image_ids: Sequence[str], level: float, draws: Sequence[int]) -> list[torch.Generator]:
        """Each image's own noise source, seeded by (study seed, image id, level, draw number)."""
        return [torch.Generator().manual_seed(derive_seed(self.config.seed, "diffusion-sample", image_id,
                                                          f"{level:g}", k))
                for image_id, k in zip(image_ids, draws, strict=True)]

    def _estimate(self, x: torch.Tensor, condition: torch.Tensor, t: torch.Tensor,
                  signal: torch.Tensor) -> torch.Tensor:
        """x̂₀ from the network's output at each image's timestep t (ᾱ_t = signal[t]), clipped to [−1, 1]."""
        out = self.net(x, condition, t)
        now = signal[t].view(-1, 1, 1, 1)
        prediction = self.config.reconstructors.diffusion.prediction
        if prediction == "epsilon":
            out = (x - (1 - now).sqrt() * out) / now.sqrt()
        elif prediction == "v":
            out = now.sqrt() * x - (1 - now).sqrt() * out
        return out.clamp(-1, 1)

    def _starts(self, condition: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        """Each image's starting timestep t₀: the configured one, or for 'matched' where its noise is MATCH·σ̂(y)."""
        cfg = self.config.reconstructors.diffusion
        top = cfg.start_timestep()
        if cfg.start != "matched":
            return torch.full((len(condition),), top, dtype=torch.long)
        sigma = torch.tensor([estimate_sigma(image[0].cpu().double().numpy()) for image in condition])
        level = ((1 - signal) / signal).sqrt().cpu().double()  # the chain's noise over its signal, rising in t
        return torch.searchsorted(level[:top + 1].contiguous(), MATCH * sigma).clamp(1, top)

    @staticmethod
    def _step(x: torch.Tensor, estimate: torch.Tensor, now: torch.Tensor, then: torch.Tensor, eta: float,
              noise: torch.Tensor | None) -> torch.Tensor:
        """DDIM's update from ᾱ = `now` to `then` given x̂₀ = `estimate`, with σ = η·(DDPM's posterior std)·noise."""
        direction = (x - now.sqrt() * estimate) / (1 - now).sqrt()  # ε̂ implied by x_t and x̂₀
        sigma = eta * ((1 - then) / (1 - now) * (1 - now / then)).clamp(min=0).sqrt()
        out = then.sqrt() * estimate + (1 - then - sigma ** 2).clamp(min=0).sqrt() * direction
        return out if noise is None else out + sigma * noise

    @torch.no_grad()
    def sample(self, degraded: torch.Tensor, physics: Acquisition, level: float, measurement: torch.Tensor | None,
               image_ids: Sequence[str], draws: Sequence[int] | None = None) -> torch.Tensor:
        """One posterior sample per image (image i's draws[i]-th, default the 0th), in [0, 1], on degraded's device."""
        cfg = self.config.reconstructors.diffusion
        self.net.eval()
        condition = degraded.to(self.device) * 2 - 1
        generators = self._generators(image_ids, level, [0] * len(image_ids) if draws is None else draws)

        def noise() -> torch.Tensor:
            return torch.stack([torch.randn(degraded.shape[1:], generator=g) for g in generators]).to(self.device)

        signal = self.scheduler.alphas_cumprod.to(self.device)  # ᾱ_t
        starts = self._starts(condition, signal)
        x = noise()
        if cfg.start != "noise":
            first = signal[starts.to(self.device)].view(-1, 1, 1, 1)
            x = first.sqrt() * condition + (1 - first).sqrt() * x
        # (B, steps): each image's timesteps from its t₀ down to 0 (repeated ones are steps of no change)
        timesteps = torch.stack([torch.linspace(int(t), 0, cfg.sampling_steps).round().long() for t in starts])
        timesteps = timesteps.to(self.device)
        consistent = cfg.data_consistency and measurement is not None
        estimate = condition
        for k in range(cfg.sampling_steps):
            t = timesteps[:, k]
            estimate = self._estimate(x, condition, t, signal)
            if consistent:  # the clean-image estimate agrees with the measured k-space samples
                image = physics.consistent(((estimate + 1) / 2).to(degraded.device), measurement, level)
                estimate = image.to(self.device) * 2 - 1
            if k + 1 < cfg.sampling_steps:
                x = self._step(x, estimate, signal[t].view(-1, 1, 1, 1), signal[timesteps[:, k + 1]].view(-1, 1, 1, 1),
                               cfg.eta, noise() if cfg.eta > 0 else None)
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
