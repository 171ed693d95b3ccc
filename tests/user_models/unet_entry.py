"""Entry points as a user's own package would ship them, importable as `tests.user_models.unet_entry:<factory>`."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from monai.networks.nets import UNet

from recon_core.reconstructors.unet_denoiser import Residual


def factory(path: str) -> torch.nn.Module:
    """The tiny study's residual U-Net (configs/tiny.yaml's channels) with the weights saved at `path`."""
    net = Residual(UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 16, 32), strides=(2, 2),
                        num_res_units=1))
    net.load_state_dict(torch.load(path, weights_only=True))
    return net


def identity_failing_while_flagged() -> Callable[..., torch.Tensor]:
    """A callable on (images, physics, level, measurement) returning the input; raises at level 300 while
    $TANDEM_TEST_FAIL is set (a model that breaks on one cell, then works when run again)."""

    def call(images: torch.Tensor, physics: object, level: float, measurement: torch.Tensor | None) -> torch.Tensor:
        if level == 300 and os.environ.get("TANDEM_TEST_FAIL"):
            raise RuntimeError("CUDA out of memory (simulated)")
        return images.clone()

    return call
