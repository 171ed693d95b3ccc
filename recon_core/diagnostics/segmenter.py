"""Tumour segmenter for MRI slices: MONAI UNet trained with MONAI's Dice + cross-entropy loss on clean slices."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from monai.networks.nets import UNet

from recon_core.config import StudyConfig, stable_hash
from recon_core.diagnostics.task import TaskModel, TaskOutput
from recon_core.metrics.segmentation import segmentation_quality
from recon_core.models.batches import SplitData
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import DiceCE
from recon_core.seeding import seeded_torch


class Segmenter(TaskModel):
    """Binary tumour masks for batches of (B, 1, H, W) slices, judged per slice by Dice and HD95."""

    name = "segmenter"

    def __init__(self, config: StudyConfig, device: torch.device) -> None:
        super().__init__(config, device)
        channels = config.diagnostic.segmenter_channels
        strides = (2,) * (len(channels) - 1)
        self.arch = {"net": "monai.UNet segmenter", "channels": list(channels), "out": 2}
        with seeded_torch(config.seed, "segmenter-init"):
            self.net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=channels, strides=strides,
                            num_res_units=1).to(device)

    def weights_key(self) -> str:
        c = self.config
        return stable_hash("segmenter", c.cohort, c.diagnostic.segmenter_channels, c.diagnostic.segmenter_steps,
                           c.diagnostic.batch_size, c.diagnostic.learning_rate, c.seed)

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        """Dice + CE (softmax over background/tumour) on clean slices and their masks."""
        cfg = self.config.diagnostic
        batches = data.sampler(self.config.seed, "segmenter-train", cfg.batch_size, self.device)
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.segmenter_steps, "one_cycle")
        return TrainingPlan(cfg.segmenter_steps, batches, [Objective(lambda b: self.net(b.images), DiceCE(),
                                                                     optimiser, schedule)], [self.net], self.device)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) uint8 masks (argmax of background/tumour) on the images' device."""
        logits = self.net(images.to(self.device))
        return logits.argmax(1, keepdim=True).to(torch.uint8).to(images.device)

    def lesion_probability(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) tumour probability (softmax over background/tumour), differentiable in the images."""
        return torch.softmax(self.net(images), 1)[:, 1]

    def evidence(self, label: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The mean tumour probability of each slice (`label` is ignored: one structure is segmented)."""
        return lambda images: self.lesion_probability(images).mean((-2, -1))

    def evaluate(self, images: torch.Tensor, truth: torch.Tensor | None) -> TaskOutput:
        """Predicted masks, and Dice and HD95 per slice against the true masks."""
        predicted = self.predict(images).cpu()
        metrics = {} if truth is None else {k: v.numpy() for k, v in segmentation_quality(predicted, truth).items()}
        return TaskOutput(metrics=metrics, masks=predicted[:, 0].numpy().astype(np.float32))
