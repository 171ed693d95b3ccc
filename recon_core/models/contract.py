"""The one model contract: every trained model (reconstructors, classifier, segmenter) fits or loads the same way.

A trainable model has a network, an architecture description and a weights key (the hash of
what determines its weights). `fit` either loads the checkpoint that key names or trains and
saves it: the only place that decides. Training draws batches that carry the rows beside the
images (labels, sex, age, subject), so an objective can use demographics; a model may also
receive other, frozen models at training time (a classifier for a fairness loss). What a
model sees at inference is its own business (`reconstruct`, `evaluate`) and never includes
the clean image for a reconstructor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.checkpoints import load_checkpoint, save_checkpoint
from recon_core.models.losses import Loss
from recon_core.progress import Progress, silent

if TYPE_CHECKING:
    from recon_core.config import StudyConfig


@dataclass
class Objective:
    """One optimiser's share of a training step: `loss(output(batch), batch)`, then a step of its optimiser."""

    output: Callable[[TrainingBatch], Any]
    loss: Loss
    optimiser: torch.optim.Optimizer
    scheduler: LRScheduler


@dataclass
class TrainingPlan:
    """What a training run does: `steps` batches, each through every objective in order, on `device`."""

    steps: int
    batches: Callable[[int], TrainingBatch]
    objectives: list[Objective]
    modules: list[torch.nn.Module]
    device: torch.device


def adam(module: torch.nn.Module, learning_rate: float, steps: int, schedule: str = "cosine",
         betas: tuple[float, float] = (0.9, 0.999)) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """Adam on a module's parameters with a learning-rate schedule over `steps`.

    'cosine' anneals to 0; 'one_cycle' warms up then anneals (the diagnostic models); 'linear_decay'
    holds the rate for the first half and decays it linearly to 0 over the second (pix2pix).
    """
    optimiser = torch.optim.Adam(module.parameters(), lr=learning_rate, betas=betas)
    if schedule == "one_cycle":
        return optimiser, torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=steps)
    if schedule == "linear_decay":
        half = steps / 2
        return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (steps - step) / half))
    return optimiser, torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)


@contextmanager
def frozen_for_training(models: Mapping[str, TrainableModel]) -> Iterator[Mapping[str, TrainableModel]]:
    """Models handed to another's training: in eval mode with no gradients for their parameters, restored after."""
    saved = [(model.net, model.net.training, [p.requires_grad for p in model.net.parameters()])
             for model in models.values()]
    for net, _, _ in saved:
        net.eval()
        net.requires_grad_(False)
    try:
        yield models
    finally:
        for net, training, flags in saved:
            net.train(training)
            for parameter, flag in zip(net.parameters(), flags, strict=True):
                parameter.requires_grad_(flag)


def run_training(plan: TrainingPlan, progress: Progress, stage: str) -> None:
    """The one training loop: each step draws a batch and runs every objective in order, then steps the schedules.

    Modules train in train mode and are left in eval mode; progress is reported every 20 steps.
    """
    for module in plan.modules:
        module.train()
    for step in range(plan.steps):
        batch = plan.batches(step).to(plan.device)
        for objective in plan.objectives:
            loss = objective.loss(objective.output(batch), batch)
            objective.optimiser.zero_grad()
            loss.backward()
            objective.optimiser.step()
        for objective in plan.objectives:
            objective.scheduler.step()
        if step % 20 == 0 or step == plan.steps - 1:
            progress(stage, step + 1, plan.steps)
    for module in plan.modules:
        module.eval()


class TrainableModel(ABC):
    """A model with trained weights: fit-or-load by weights key, one checkpoint file, one training loop."""

    name: str
    """Names its checkpoint file `<name>-<weights key>.pt`."""
    net: torch.nn.Module
    arch: dict
    uses: tuple[str, ...] = ()
    """The other models its training takes, frozen, by name (e.g. 'classifier'); its weights key includes theirs."""

    def __init__(self, config: StudyConfig, device: torch.device) -> None:
        self.config = config
        self.device = device

    @abstractmethod
    def weights_key(self) -> str:
        """The hash of everything that determines the weights (config parts, seed, a user file's SHA-256).

        A model whose training uses frozen models (`uses`) puts their weights keys into its own.
        """

    @abstractmethod
    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        """Batches and objectives of this model's training on `data`, with `frozen` models at hand."""

    def checkpoint_path(self, checkpoint_dir: Path) -> Path:
        """Where this configuration's weights live: `<name>-<weights key>.pt`."""
        return checkpoint_dir / f"{self.name}-{self.weights_key()}.pt"

    def load(self, checkpoint_dir: Path) -> None:
        """The matching weights (CheckpointError when absent or for another architecture), in eval mode."""
        load_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)
        self.net.eval()

    def fit(self, data: SplitData, checkpoint_dir: Path, progress: Progress = silent,
            frozen: Mapping[str, TrainableModel] | None = None) -> None:
        """Loads the weights the key names, or trains on `data` and saves them.

        Of the `frozen` models at hand, training receives the ones this model `uses`, frozen for the
        duration (never updated, no gradients for their parameters) and left as they were after.
        """
        if self.checkpoint_path(checkpoint_dir).exists():
            self.load(checkpoint_dir)
            return
        available = frozen or {}
        missing = [name for name in self.uses if name not in available]
        if missing:
            raise ValueError(f"{self.name}: its training needs the frozen model(s) {missing}; given {list(available)}")
        with frozen_for_training({name: available[name] for name in self.uses}) as handed:
            run_training(self.training_plan(data, handed), progress, f"training {self.name}")
        save_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)
