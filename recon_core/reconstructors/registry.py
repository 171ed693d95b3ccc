"""Reconstructor registry: a new method is one file in this package plus one line below."""

from __future__ import annotations

import importlib

import torch

from recon_core.config import StudyConfig
from recon_core.reconstructors.base import Reconstructor

_REGISTRY: dict[str, str] = {
    "none": "recon_core.reconstructors.identity:Identity",
    "tv": "recon_core.reconstructors.tv_denoise:TVDenoise",
    "unet": "recon_core.reconstructors.unet_denoiser:UNetDenoiser",
    "zero_filled": "recon_core.reconstructors.zero_filled:ZeroFilled",
    "gan": "recon_core.reconstructors.gan:GAN",
    "diffusion": "recon_core.reconstructors.diffusion:Diffusion",
}


class UnknownReconstructorError(KeyError):
    """A reconstructor name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def available() -> list[str]:
    """Registered reconstructor names."""
    return list(_REGISTRY)


def build_reconstructor(name: str, config: StudyConfig, device: torch.device) -> Reconstructor:
    """Instantiates a registered reconstructor by name."""
    if name not in _REGISTRY:
        raise UnknownReconstructorError(f"unknown reconstructor {name!r}; available: {available()}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(config, device)
