"""Axial brain slices to build MRI subjects on: the MNI152 T1 template (real anatomy) or a procedural head.

The MNI152 template ships with nilearn (offline, 197×233×189 at 1 mm). Its axial slices are
cropped to a square around the head, resized once per image size, and kept with the grey-
matter, white-matter and brain-mask maps; the procedural head (skull, cortex, white matter,
ventricles) needs no file and is what the fast tests use. Both are T1-weighted in appearance:
white matter bright, grey matter darker, CSF dark.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from skimage.transform import resize

from recon_core.cohorts.demographics import CohortError

AXIAL_RANGE = (40, 120)
"""MNI z indices (1 mm) offered to subjects: from the ventricles' floor to above their roof."""


@dataclass(frozen=True)
class BrainStack:
    """Axial slices (Z, H, W) in [0, 1] with tissue maps of the same shape; slice spacing 1 mm."""

    t1: np.ndarray
    brain: np.ndarray  # brain mask (bool): where a tumour may sit
    csf: np.ndarray  # CSF probability: darkened further with age (atrophy)
    mm_per_pixel: float
    name: str


def _square(volume: np.ndarray, size: int) -> np.ndarray:
    """(Z, H, W) cropped to a square around the non-zero head, resized to size × size per slice."""
    head = volume.max(axis=0) > 0.05 * volume.max()
    rows, cols = np.flatnonzero(head.any(1)), np.flatnonzero(head.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(r1 - r0, c1 - c0) + 8
    pad = np.zeros((volume.shape[0], side, side), dtype=np.float32)
    ro, co = (side - (r1 - r0)) // 2, (side - (c1 - c0)) // 2
    pad[:, ro:ro + r1 - r0, co:co + c1 - c0] = volume[:, r0:r1, c0:c1]
    return np.stack([resize(s, (size, size), anti_aliasing=True, preserve_range=True) for s in pad]).astype(
        np.float32), side


@lru_cache(maxsize=4)
def mni152_stack(size: int) -> BrainStack:
    """The MNI152 T1 template's axial slices at size × size (nilearn's bundled copy, no download)."""
    try:
        from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_template
    except ImportError as exc:
        raise CohortError("anatomy 'mni152' needs nilearn (in requirements.txt); or use anatomy 'procedural'") \
            from exc

    def axial(img) -> np.ndarray:
        data = np.asarray(img.dataobj, dtype=np.float32)[:, :, AXIAL_RANGE[0]:AXIAL_RANGE[1]]
        return np.rot90(np.moveaxis(data, 2, 0), k=1, axes=(1, 2))  # (Z, y, x), anterior up

    t1 = axial(load_mni152_template(resolution=1))
    gm = axial(load_mni152_gm_template(resolution=1))
    brain = axial(load_mni152_brain_mask(resolution=1))
    stacked = np.concatenate([t1, gm, brain])
    squared, side = _square(stacked, size)
    z = t1.shape[0]
    t1s, gms, brains = squared[:z], squared[z:2 * z], squared[2 * z:]
    t1s = t1s / max(float(t1s.max()), 1e-6)
    csf = np.clip(brains - gms - np.clip(t1s - 0.5, 0, 1) * 2, 0, 1) * (brains > 0.5)
    return BrainStack(t1s, brains > 0.5, csf.astype(np.float32), side / size, "mni152")


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


@lru_cache(maxsize=4)
def procedural_stack(size: int) -> BrainStack:
    """A drawn head in the same format: scalp, skull, cortex (grey), white matter, two lateral ventricles."""
    depth = AXIAL_RANGE[1] - AXIAL_RANGE[0]
    yy, xx = np.mgrid[0:size, 0:size] / size
    t1 = np.zeros((depth, size, size), np.float32)
    brain = np.zeros((depth, size, size), bool)
    csf = np.zeros((depth, size, size), np.float32)
    for k in range(depth):
        shrink = 1 - 0.35 * ((k - depth * 0.4) / depth) ** 2  # the head narrows away from its widest slice
        head = _ellipse(yy, xx, 0.5, 0.5, 0.44 * shrink, 0.36 * shrink)
        skull = _ellipse(yy, xx, 0.5, 0.5, 0.41 * shrink, 0.33 * shrink)
        inner = _ellipse(yy, xx, 0.5, 0.5, 0.38 * shrink, 0.30 * shrink)
        white = _ellipse(yy, xx, 0.5, 0.5, 0.31 * shrink, 0.23 * shrink)
        vent = (_ellipse(yy, xx, 0.47, 0.45, 0.10 * shrink, 0.03) | _ellipse(yy, xx, 0.47, 0.55, 0.10 * shrink, 0.03))
        vent &= k < depth * 0.7
        image = np.where(head, 0.7, 0.0)  # scalp fat, bright on T1
        image = np.where(skull, 0.1, image)  # cortical bone, dark
        image = np.where(inner, 0.45, image)  # grey matter
        image = np.where(white, 0.8, image)
        image = np.where(vent, 0.08, image)
        t1[k], brain[k], csf[k] = image, inner, vent
    return BrainStack(t1, brain, csf, 180 / size, "procedural")


def brain_stack(anatomy: str, size: int) -> BrainStack:
    """The template stack a cohort config names."""
    if anatomy == "mni152":
        return mni152_stack(size)
    if anatomy == "procedural":
        return procedural_stack(size)
    raise CohortError(f"cohort.anatomy: {anatomy!r} is not a brain anatomy; use 'mni152' or 'procedural'")
