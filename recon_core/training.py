"""The one optimisation loop every trained model uses: Adam, a learning-rate schedule, progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from recon_core.progress import Progress


def optimise(net: torch.nn.Module, steps: int, learning_rate: float, batch_loss: Callable[[int], torch.Tensor],
             progress: Progress, stage: str, schedule: Literal["cosine", "one_cycle"] = "cosine") -> None:
    """Runs `steps` Adam steps on batch_loss(step); leaves the network in eval mode."""
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    if schedule == "one_cycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=steps)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    net.train()
    for step in range(steps):
        loss = batch_loss(step)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        if step % 20 == 0 or step == steps - 1:
            progress(stage, step + 1, steps)
    net.eval()
