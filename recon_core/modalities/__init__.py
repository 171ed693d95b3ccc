"""Imaging modalities as objects: a new modality is one module here, its physics and cohort files, one line below."""

from __future__ import annotations

from recon_core.modalities.base import Headline, Modality
from recon_core.registry import Registry, UnknownNameError


class UnknownModalityError(UnknownNameError):
    """A modality name that is not registered."""


REGISTRY = Registry("modality", {
    "xray": "recon_core.modalities.xray:XRay",
    "mri": "recon_core.modalities.mri:MRI",
}, UnknownModalityError)


def available_modalities() -> list[str]:
    """Registered modality names."""
    return REGISTRY.names()


def get_modality(name: str) -> Modality:
    """The modality object of a registered name."""
    return REGISTRY.load(name)()


__all__ = ["Headline", "Modality", "UnknownModalityError", "available_modalities", "get_modality"]
