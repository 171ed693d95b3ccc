"""Forward models of acquisition: one object per acquisition type (which one a study uses is its modality's choice)."""

from __future__ import annotations

from recon_core.physics.base import Acquisition, LevelAxis, PhysicsError
from recon_core.physics.mri_kspace import KspaceUndersampling
from recon_core.physics.xray_projection import ProjectionDose
from recon_core.physics.xray_sinogram import SinogramDose

__all__ = ["Acquisition", "KspaceUndersampling", "LevelAxis", "PhysicsError", "ProjectionDose", "SinogramDose"]
