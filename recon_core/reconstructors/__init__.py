"""Reconstructors: a registry and one file per method."""

from recon_core.reconstructors.base import Reconstructor
from recon_core.reconstructors.registry import UnknownReconstructorError, available, build_reconstructor

__all__ = ["Reconstructor", "UnknownReconstructorError", "available", "build_reconstructor"]
