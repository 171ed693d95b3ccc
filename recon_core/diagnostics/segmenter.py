"""Tumour segmenter for MRI slices: MONAI UNet trained with MONAI's Dice + cross-entropy loss on clean slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from recon_core.checkpoints import load_checkpoint, save_checkpoint
from recon_core.config import StudyConfig, stable_hash
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng, seeded_torch
from recon_core.training import optimise


class Segmenter:
    """Binary tumour masks for batches of (B, 1, H, W) slices; trains once per config, then loads."""

    def __init__(self, config: StudyConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        channels = config.diagnostic.segmenter_channels
        strides = (2,) * (len(channels) - 1)
        self.arch = {"net": "monai.UNet segmenter", "channels": list(channels), "out": 2}
        with seeded_torch(config.seed, "segmenter-init"):
            self.net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=channels, strides=strides,
                            num_res_units=1).to(device)

    def weights_key(self) -> str:
        """What determines the segmenter's weights."""
        c = self.config
        return stable_hash("segmenter", c.cohort, c.diagnostic.segmenter_channels, c.diagnostic.segmenter_steps,
                           c.diagnostic.batch_size, c.diagnostic.learning_rate, c.seed)

    def checkpoint_path(self, checkpoint_dir: Path) -> Path:
        """Where this configuration's weights live."""
        return checkpoint_dir / f"segmenter-{self.weights_key()}.pt"

    def load(self, checkpoint_dir: Path) -> None:
        """Loads this configuration's trained weights; a missing checkpoint is a CheckpointError."""
        load_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)
        self.net.eval()

    def fit(self, images: np.ndarray, masks: np.ndarray, checkpoint_dir: Path, progress: Progress = silent) -> None:
        """Dice + CE (MONAI DiceCELoss, softmax over background/tumour) on clean slices; loads if trained."""
        if self.checkpoint_path(checkpoint_dir).exists():
            self.load(checkpoint_dir)
            return
        cfg = self.config.diagnostic
        rng = numpy_rng(self.config.seed, "segmenter-train")
        torch.manual_seed(int(rng.integers(2**31)))
        loss = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)

        def batch_loss(step: int) -> torch.Tensor:
            idx = rng.integers(0, len(images), cfg.batch_size)
            x = torch.from_numpy(images[idx][:, None]).to(self.device)
            y = torch.from_numpy(masks[idx][:, None].astype(np.int64)).to(self.device)
            return loss(self.net(x), y)

        optimise(self.net, cfg.segmenter_steps, cfg.learning_rate, batch_loss, progress, "training segmenter",
                 "one_cycle")
        save_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) uint8 masks (argmax of background/tumour) on the images' device."""
        logits = self.net(images.to(self.device))
        return logits.argmax(1, keepdim=True).to(torch.uint8).to(images.device)
