"""Reconstructor registry: a new method is one file in this package plus one line below."""

from __future__ import annotations

import torch

from recon_core.config import STRATEGIES, StudyConfig
from recon_core.reconstructors.base import Reconstructor
from recon_core.registry import Registry, UnknownNameError


class UnknownReconstructorError(UnknownNameError):
    """A reconstructor name that is not registered."""


REGISTRY = Registry("reconstructor", {
    "none": "recon_core.reconstructors.identity:Identity",
    "tv": "recon_core.reconstructors.tv_denoise:TVDenoise",
    "unet": "recon_core.reconstructors.unet_denoiser:UNetDenoiser",
    "zero_filled": "recon_core.reconstructors.zero_filled:ZeroFilled",
    "gan": "recon_core.reconstructors.gan:GAN",
    "diffusion": "recon_core.reconstructors.diffusion:Diffusion",
}, UnknownReconstructorError)

USER_SOURCES = Registry("user reconstructor source", {
    "torchscript": "recon_core.reconstructors.user:UserReconstructor",
    "entry_point": "recon_core.reconstructors.user:UserReconstructor",
    "bundle": "recon_core.reconstructors.user:UserReconstructor",
    "files": "recon_core.reconstructors.imported:ImportedReconstructions",
})
"""How a reconstructor declared in `reconstructors.user` is built, by its source."""


MITIGATION = Registry("mitigation strategy", {
    strategy: "recon_core.mitigation.variant:MitigatedReconstructor" for strategy in STRATEGIES})
"""How a variant `<base>+<strategy>` is built: its base, fine-tuned by the strategy."""


def available() -> list[str]:
    """Registered reconstructor names."""
    return REGISTRY.names()


def build_reconstructor(name: str, config: StudyConfig, device: torch.device) -> Reconstructor:
    """Instantiates a registered reconstructor, a mitigation variant `<base>+<strategy>` of one, or the user's own
    declared under `name` in `reconstructors.user`."""
    variant = config.reconstructors.variant(name)
    if variant is not None:
        base, strategy = variant
        return MITIGATION.load(strategy)(config, device, name, build_reconstructor(base, config, device), strategy)
    declared = config.reconstructors.declared(name)
    if declared is None:
        return REGISTRY.load(name)(config, device)
    return USER_SOURCES.load(declared.source)(config, device, declared)
