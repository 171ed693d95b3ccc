"""Forward models of acquisition: one object per acquisition type."""

from __future__ import annotations

from recon_core.config import StudyConfig
from recon_core.physics.base import Acquisition, PhysicsError
from recon_core.physics.xray_projection import ProjectionDose
from recon_core.physics.xray_sinogram import SinogramDose


def build_physics(config: StudyConfig) -> Acquisition:
    """The acquisition a study config describes."""
    p = config.physics
    if p.model == "projection":
        return ProjectionDose(config.seed, p.attenuation_scale, p.electronic_noise)
    if p.model == "sinogram":
        return SinogramDose(config.seed, p.n_angles)
    raise PhysicsError(f"physics.model: unknown model {p.model!r}; use 'projection' or 'sinogram'")


__all__ = ["Acquisition", "PhysicsError", "ProjectionDose", "SinogramDose", "build_physics"]
