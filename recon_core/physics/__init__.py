"""Forward models of acquisition: one object per acquisition type."""

from __future__ import annotations

from recon_core.config import StudyConfig
from recon_core.physics.base import Acquisition, PhysicsError
from recon_core.physics.mri_kspace import KspaceUndersampling
from recon_core.physics.xray_projection import ProjectionDose
from recon_core.physics.xray_sinogram import SinogramDose


def build_physics(config: StudyConfig) -> Acquisition:
    """The acquisition a study config describes."""
    p = config.physics
    if p.model == "projection":
        return ProjectionDose(config.seed, p.attenuation_scale, p.electronic_noise)
    if p.model == "sinogram":
        return SinogramDose(config.seed, p.n_angles)
    if p.model == "kspace":
        return KspaceUndersampling(config.seed, p.mask, p.centre_fraction, p.kspace_snr)
    raise PhysicsError(f"physics.model: unknown model {p.model!r}; use 'projection', 'sinogram' or 'kspace'")


__all__ = ["Acquisition", "KspaceUndersampling", "PhysicsError", "ProjectionDose", "SinogramDose", "build_physics"]
