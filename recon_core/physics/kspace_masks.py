"""Undersampling masks for 2D k-space, each named by the acceleration it really has.

Convention (as fastMRI): masks live in centred k-space (DC at index N//2), True = sampled.
Acceleration = 1 / sampled fraction, measured from the mask. Written here rather than taken
from MONAI's `RandomKspaceMask`/`EquispacedKspaceMask` (or fastMRI's mask functions) because
those draw each line with a probability or round the spacing, so the realised acceleration of
one mask drifts from its name (at 16× on 128 lines by ±30 %); here every mask samples exactly
round(N / R) lines (Cartesian) or round(N² / R) points (radial), so "8×" means 8×.
"""

from __future__ import annotations

import math

import numpy as np

from recon_core.physics.base import PhysicsError

KINDS = ("radial", "cartesian_random", "cartesian_equispaced")
GOLDEN_ANGLE = math.pi * (math.sqrt(5) - 1) / 2  # ≈ 111.25° between successive spokes


def measured_acceleration(mask: np.ndarray) -> float:
    """1 / (sampled fraction) of a mask."""
    fraction = float(np.mean(mask))
    return math.inf if fraction == 0 else 1.0 / fraction


def _check(size: int, acceleration: float) -> None:
    if not acceleration >= 1:
        raise PhysicsError(f"acceleration {acceleration!r} must be ≥ 1 (1 = fully sampled)")
    if size < 8:
        raise PhysicsError(f"k-space of {size} lines is too small to undersample")


def _centre_lines(size: int, count: int) -> np.ndarray:
    start = size // 2 - count // 2
    return np.arange(start, start + count)


def cartesian_random(size: int, acceleration: float, centre_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Phase-encode lines (columns): a fully sampled centre plus uniformly random others, exactly N/R in all."""
    _check(size, acceleration)
    total = max(1, round(size / acceleration))
    centre = min(total, max(1, round(size * centre_fraction)))
    lines = np.zeros(size, dtype=bool)
    lines[_centre_lines(size, centre)] = True
    others = np.flatnonzero(~lines)
    lines[rng.choice(others, size=total - centre, replace=False)] = True
    return np.broadcast_to(lines[None, :], (size, size)).copy()


def cartesian_equispaced(size: int, acceleration: float, centre_fraction: float) -> np.ndarray:
    """A fully sampled centre plus outer lines at (near-)equal spacing, exactly N/R lines in all."""
    _check(size, acceleration)
    total = max(1, round(size / acceleration))
    centre = min(total, max(1, round(size * centre_fraction)))
    lines = np.zeros(size, dtype=bool)
    lines[_centre_lines(size, centre)] = True
    others = np.flatnonzero(~lines)
    picks = np.unique(np.round(np.linspace(0, len(others) - 1, total - centre)).astype(int)) if total > centre \
        else np.array([], dtype=int)
    lines[others[picks]] = True
    return np.broadcast_to(lines[None, :], (size, size)).copy()


def radial(size: int, acceleration: float) -> np.ndarray:
    """Golden-angle spokes through the centre until exactly N²/R points are sampled.

    Spokes are added whole; the last one is filled from the centre outwards only as far as the
    target count, so the sampled fraction is exact rather than a step of one spoke.
    """
    _check(size, acceleration)
    target = max(1, round(size * size / acceleration))
    mask = np.zeros((size, size), dtype=bool)
    c = size // 2
    reach = math.ceil(size * 0.75)  # past the corners (√2 · N/2)
    radius = np.arange(-2 * reach, 2 * reach + 1) * 0.5  # half-pixel steps along a spoke
    order = np.argsort(np.abs(radius), kind="stable")  # centre first, then outwards on both sides
    angle, count = 0.0, 0
    for _ in range(64 * size):  # spokes; far more than any acceleration ≥ 1 needs
        if count == target:
            break
        rows = np.round(c + radius[order] * math.sin(angle)).astype(int)
        cols = np.round(c + radius[order] * math.cos(angle)).astype(int)
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        for r, k in zip(rows[inside], cols[inside], strict=True):
            if not mask[r, k]:
                mask[r, k] = True
                count += 1
                if count == target:
                    break
        angle += GOLDEN_ANGLE
    if count < target:  # only thinkable near 1×: fill the rest so the fraction is still exact
        rest = np.flatnonzero(~mask.reshape(-1))[: target - count]
        mask.reshape(-1)[rest] = True
    return mask


def make_mask(kind: str, size: int, acceleration: float, centre_fraction: float,
              rng: np.random.Generator) -> np.ndarray:
    """A (size, size) boolean mask of the named kind at the given acceleration."""
    if kind == "radial":
        return radial(size, acceleration)
    if kind == "cartesian_random":
        return cartesian_random(size, acceleration, centre_fraction, rng)
    if kind == "cartesian_equispaced":
        return cartesian_equispaced(size, acceleration, centre_fraction)
    raise PhysicsError(f"unknown mask kind {kind!r}; use one of {list(KINDS)}")
