"""Multi-label chest X-ray classifier (MONAI DenseNet), trained on clean diagnostic-training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import DenseNet, DenseNet121

from recon_core.checkpoints import load_checkpoint, save_checkpoint
from recon_core.config import StudyConfig, stable_hash
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng, seeded_torch
from recon_core.training import optimise


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


class Classifier:
    """Per-label probabilities for batches of images; trains once per config, then loads."""

    def __init__(self, config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> None:
        self.config = config
        self.labels = labels
        self.device = device
        with seeded_torch(config.seed, "classifier-init"):
            net, self.arch = build_network(config.diagnostic.network, len(labels))
        self.net = net.to(device)

    def weights_key(self) -> str:
        """What determines the classifier's weights."""
        return stable_hash("classifier", self.config.cohort, self.config.diagnostic, self.config.seed)

    def checkpoint_path(self, checkpoint_dir: Path) -> Path:
        """Where this configuration's weights live."""
        return checkpoint_dir / f"classifier-{self.weights_key()}.pt"

    def load(self, checkpoint_dir: Path) -> None:
        """Loads this configuration's trained weights; a missing checkpoint is a CheckpointError."""
        load_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)
        self.net.eval()

    def fit(self, images: np.ndarray, targets: np.ndarray, checkpoint_dir: Path,
            progress: Progress = silent) -> None:
        """BCE training on clean images; unknown (NaN) labels carry no loss. Loads instead if trained."""
        path = self.checkpoint_path(checkpoint_dir)
        if path.exists():
            self.load(checkpoint_dir)
            return
        cfg = self.config.diagnostic
        rng = numpy_rng(self.config.seed, "classifier-train")
        torch.manual_seed(int(rng.integers(2**31)))

        def batch_loss(step: int) -> torch.Tensor:
            idx = rng.integers(0, len(images), cfg.batch_size)
            x = torch.from_numpy(images[idx][:, None]).to(self.device)
            y = torch.from_numpy(targets[idx]).to(self.device)
            known = ~torch.isnan(y)
            return torch.nn.functional.binary_cross_entropy_with_logits(
                self.net(x)[known], y[known], reduction="sum") / known.sum().clamp_min(1)

        optimise(self.net, cfg.steps, cfg.learning_rate, batch_loss, progress, "training classifier", "one_cycle")
        save_checkpoint(path, self.net, self.arch)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L) probabilities for (B, 1, H, W) images, on the images' device."""
        return torch.sigmoid(self.net(images.to(self.device))).to(images.device)
