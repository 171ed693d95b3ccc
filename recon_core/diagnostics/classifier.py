"""Multi-label classifier (MONAI DenseNet), trained on clean diagnostic-training images."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import torch
from monai.networks.nets import DenseNet, DenseNet121

from recon_core.config import StudyConfig, stable_hash
from recon_core.diagnostics.task import TaskModel, TaskOutput
from recon_core.models.batches import SplitData
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import MaskedBCE
from recon_core.seeding import seeded_torch


def build_network(network: str, n_labels: int) -> tuple[torch.nn.Module, dict]:
    """The classifier network and its architecture description (checked when loading weights)."""
    if network == "densenet_small":  # ~0.2 s a training step at batch 16, 128 px on 2 CPU cores
        blocks = (4, 8, 12, 8)
        net = DenseNet(spatial_dims=2, in_channels=1, out_channels=n_labels, init_features=16,
                       growth_rate=8, block_config=blocks)
    elif network == "densenet121":  # GPU-sized
        blocks = (6, 12, 24, 16)
        net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=n_labels)
    else:
        raise ValueError(f"diagnostic.network: unknown network {network!r}; use densenet_small or densenet121")
    return net, {"net": network, "blocks": list(blocks), "n_labels": n_labels}


class Classifier(TaskModel):
    """Per-label probabilities for batches of images; BCE on clean images, unknown labels carry no loss."""

    name = "classifier"

    def __init__(self, config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> None:
        super().__init__(config, device)
        self.labels = labels
        with seeded_torch(config.seed, "classifier-init"):
            net, self.arch = build_network(config.diagnostic.network, len(labels))
        self.net = net.to(device)

    def weights_key(self) -> str:
        """Cohort, diagnostic settings and seed; the user's declared models are not its business (a declared user
        segmenter leaves this classifier's weights, and every key from before they existed, unchanged)."""
        diagnostic = replace(self.config.diagnostic, classifier_model=None, segmenter_model=None)
        return stable_hash("classifier", self.config.cohort, diagnostic, self.config.seed)

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        cfg = self.config.diagnostic
        batches = data.sampler(self.config.seed, "classifier-train", cfg.batch_size, self.device)
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.steps, "one_cycle")
        return TrainingPlan(cfg.steps, batches, [Objective(lambda b: self.net(b.images), MaskedBCE(), optimiser,
                                                           schedule)], [self.net], self.device)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L) probabilities for (B, 1, H, W) images, on the images' device."""
        return torch.sigmoid(self.net(images.to(self.device)).float()).to(images.device)

    def evidence(self, label: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The logit of finding `label` (the first finding when None)."""
        j = self.labels.index(label) if label is not None else 0
        return lambda images: self.net(images)[:, j]

    def evaluate(self, images: torch.Tensor, truth: torch.Tensor | None) -> TaskOutput:
        return TaskOutput(scores=self.predict(images).cpu().numpy())
