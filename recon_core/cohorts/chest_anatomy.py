"""Base chest anatomy for synthetic radiographs: a real PA radiograph or a drawn fallback.

Both templates share one landmark frame (normalised x right, y down, in [0, 1]) so findings
and demographics are applied the same way whichever anatomy is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from recon_core.cohorts.demographics import CohortError


@dataclass(frozen=True)
class Landmarks:
    """Where anatomy sits in the template, normalised (x, y) coordinates."""

    heart_center: tuple[float, float] = (0.60, 0.62)
    heart_radius: tuple[float, float] = (0.15, 0.11)
    # image-left lung (patient's right) and image-right lung: centre (x, y), radii (x, y)
    lungs: tuple[tuple[float, float, float, float], ...] = (
        (0.27, 0.40, 0.13, 0.27), (0.74, 0.40, 0.12, 0.25))
    costophrenic: tuple[tuple[float, float], ...] = ((0.13, 0.69), (0.87, 0.71))


@dataclass(frozen=True)
class Template:
    """A base chest image in [0, 1] (bright = attenuating) with its bone-detail layer."""

    image: np.ndarray
    detail: np.ndarray  # high-pass layer (ribs, vessels); scaled for age-dependent bone density
    landmarks: Landmarks
    name: str


def _with_detail(image: np.ndarray, name: str) -> Template:
    sigma = image.shape[0] * 0.012
    detail = image - ndimage.gaussian_filter(image, sigma)
    return Template(image.astype(np.float32), detail.astype(np.float32), Landmarks(), name)


@lru_cache(maxsize=8)
def radiograph_template(size: int) -> Template:
    """The real PA chest radiograph shipped by pydicom-data (RG1_UNCR.dcm), windowed and square.

    MONOCHROME1 stores bright-as-low, so it is inverted to the usual display convention.
    """
    try:
        import pydicom
        from pydicom.data import get_testdata_file
    except ImportError as exc:  # pragma: no cover - pinned in requirements
        raise CohortError("anatomy 'radiograph' needs pydicom and pydicom-data installed") from exc
    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        raise CohortError("pydicom-data does not provide RG1_UNCR.dcm; use anatomy 'procedural'")
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.float32)
    rows, cols = pixels.shape
    side = min(rows, cols)
    top = min(57, rows - side)  # crop the film label strip above the shoulders
    left = (cols - side) // 2
    pixels = pixels[top:top + side, left:left + side]
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    image = np.clip((pixels - lo) / (hi - lo), 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1.0 - image
    image = resize(image, (size, size), anti_aliasing=True, preserve_range=True)
    return _with_detail(np.clip(image, 0, 1), "radiograph")


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


@lru_cache(maxsize=8)
def procedural_template(size: int) -> Template:
    """A drawn chest (body, lungs, mediastinum, heart, ribs, clavicles, diaphragm); no files needed."""
    lm = Landmarks()
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    image = np.where(_ellipse(xx, yy, 0.5, 0.6, 0.48, 0.62), 0.45, 0.05)
    lungs = np.zeros_like(image, dtype=bool)
    for cx, cy, rx, ry in lm.lungs:
        lungs |= _ellipse(xx, yy, cx, cy, rx, ry * 1.1)
    dome = 0.70 + 0.08 * ((xx - 0.5) / 0.45) ** 2  # diaphragm domes, lower laterally
    lungs &= yy < dome
    image[lungs] = 0.18
    ribs = np.zeros_like(image)
    for k in range(9):
        arc = 0.14 + 0.068 * k + 0.10 * (np.abs(xx - 0.5) - 0.25) ** 2
        ribs += np.exp(-((yy - arc) / 0.009) ** 2)
    image += 0.14 * ribs * lungs
    image[(np.abs(xx - 0.5) < 0.07) & (yy < 0.75)] = 0.62  # mediastinum and spine
    cx, cy = lm.heart_center
    rx, ry = lm.heart_radius
    image[_ellipse(xx, yy, cx, cy, rx, ry)] = 0.68
    image[(yy >= dome) & _ellipse(xx, yy, 0.5, 0.6, 0.46, 0.6)] = 0.72  # below the diaphragm
    for side in (-1, 1):
        clavicle = np.abs(yy - (0.13 + 0.12 * np.abs(xx - 0.5))) < 0.012
        image[clavicle & (side * (xx - 0.5) > 0.05) & (side * (xx - 0.5) < 0.38)] = 0.8
    image = ndimage.gaussian_filter(image, size / 160)
    return _with_detail(np.clip(image, 0, 1), "procedural")


def template_for(anatomy: str, size: int) -> Template:
    """The template for a config's `anatomy` value."""
    if anatomy == "radiograph":
        return radiograph_template(size)
    if anatomy == "procedural":
        return procedural_template(size)
    raise CohortError(f"unknown anatomy {anatomy!r}; use 'radiograph' or 'procedural'")
