"""The failure-case workbench's image arithmetic: wipe composite, error map, attribution overlay, spread vs error.

Pure numpy, so each picture is a few milliseconds and is tested without a browser. Data range:
images and reconstructions are gray in [0, 1] (values outside are clipped for display); an
attribution map is a magnitude in [0, 1] (`attributions.attribute` scales each map to its
maximum); an absolute error is in image units and is shown against a stated top (`ERROR_TOP`).
Every picture comes back as (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from recon_core.metrics.uncertainty import spearman_rows

ERROR_TOP = 0.25
"""An absolute error of 0.25 (a quarter of the image's [0, 1] range) or more takes the error scale's top colour;
the same top as the dashboard's other error maps (`plots.ERROR_MAX`)."""
DIVIDER = np.array([255, 196, 0], dtype=np.uint8)
"""The wipe's divider colour: amber, seen on gray."""


def gray_rgb(image: np.ndarray) -> np.ndarray:
    """A gray image in [0, 1] as (H, W, 3) uint8 RGB (clipped, rounded): the base every picture starts from."""
    values = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
    return np.repeat((values * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def enlarge(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) repeated pixel by pixel to at least `size` pixels wide (an integer factor, no smoothing), so a
    32 px image shows its pixels rather than a blur and a one-pixel divider stays thin."""
    factor = max(1, -(-size // rgb.shape[1]))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def colourize(values: np.ndarray, top: float, lookup: np.ndarray) -> np.ndarray:
    """Values painted with a (256, 3) uint8 colour table: 0 → its first colour, `top` and above → its last."""
    if top <= 0:
        raise ValueError(f"the top of a colour scale must be positive, got {top}")
    scaled = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)) / top, 0.0, 1.0)
    return lookup[(scaled * 255).round().astype(np.intp)]


def wipe(clean: np.ndarray, recon: np.ndarray, position: float, divider: int = 2) -> np.ndarray:
    """Before/after composite of two same-shape RGB pictures: the left part clean, the right `position` share of
    the width the reconstruction, a `divider`-pixel amber line between them.

    position 0 is the clean picture exactly and 1 the reconstruction exactly (no line at either end).
    """
    if clean.shape != recon.shape:
        raise ValueError(f"a wipe needs two pictures of one shape, got {clean.shape} and {recon.shape}")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"the wipe's position is a share of the width in [0, 1], got {position}")
    width = clean.shape[1]
    cut = round(width * (1.0 - position))  # first column of the reconstruction
    out = clean.copy()
    out[:, cut:] = recon[:, cut:]
    if 0 < cut < width:
        out[:, max(cut - divider // 2, 0):min(cut + (divider + 1) // 2, width)] = DIVIDER
    return out


def top_mask(values: np.ndarray, threshold: float) -> np.ndarray:
    """The pixels above the `threshold` quantile of `values`: the largest (1 − threshold) share of the pixels.

    threshold 0 keeps every pixel, 1 none; ties are broken by position, so the share is exact.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"a threshold is a quantile in [0, 1], got {threshold}")
    flat = np.nan_to_num(np.asarray(values, dtype=np.float64)).ravel()
    keep = round(flat.size * (1.0 - threshold))
    mask = np.zeros(flat.size, dtype=bool)
    if keep:
        mask[np.argsort(-flat, kind="stable")[:keep]] = True
    return mask.reshape(np.shape(values))


def overlay(image: np.ndarray, attribution: np.ndarray, opacity: float, threshold: float,
            lookup: np.ndarray) -> np.ndarray:
    """An attribution map ([0, 1]) painted over a gray image ([0, 1]) where it is above its `threshold` quantile,
    blended with `opacity` in [0, 1]: opacity 0 or threshold 1 give the gray image exactly."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity is in [0, 1], got {opacity}")
    if np.shape(image) != np.shape(attribution):
        raise ValueError(f"image {np.shape(image)} and attribution {np.shape(attribution)} differ in shape")
    base = gray_rgb(image)
    alpha = opacity * top_mask(attribution, threshold)[..., None]
    painted = colourize(attribution, 1.0, lookup)
    return (base * (1.0 - alpha) + painted * alpha).round().astype(np.uint8)


def error_map(clean: np.ndarray, recon: np.ndarray, lookup: np.ndarray, top: float = ERROR_TOP) -> np.ndarray:
    """|recon − clean| painted from 0 (the scale's first colour) to `top` image units and above (its last)."""
    return colourize(np.abs(np.asarray(recon, dtype=np.float64) - np.asarray(clean, dtype=np.float64)), top, lookup)


@dataclass(frozen=True)
class SpreadError:
    """How a sampler's posterior spread relates to its error on one image (inside the imaged body)."""

    top_share: float
    """The share of the body's pixels counted as high-spread (those with the largest std)."""
    error_share: float
    """The share of the total |error| that falls in those pixels: `top_share` if the spread says nothing."""
    rho: float
    """Spearman rank correlation of std and |error| over the body's pixels (0 where either is constant)."""

    @property
    def lift(self) -> float:
        """How many times more error the high-spread pixels hold than their share of the pixels."""
        return self.error_share / self.top_share


def spread_vs_error(std: np.ndarray, clean: np.ndarray, recon: np.ndarray, top_share: float = 0.1) -> SpreadError:
    """The share of |recon − clean| inside the `top_share` highest-spread pixels, and the rank correlation, taken
    over the imaged body (clean > 0; the whole image where none is), as the sweep's stored ρ is (same function)."""
    if not 0.0 < top_share <= 1.0:
        raise ValueError(f"the high-spread share is in (0, 1], got {top_share}")
    clean = np.asarray(clean, dtype=np.float64)
    inside = clean > 0
    if not inside.any():
        inside[:] = True
    spread = np.asarray(std, dtype=np.float64)[inside]
    error = np.abs(np.asarray(recon, dtype=np.float64) - clean)[inside]
    high = top_mask(spread, 1.0 - top_share)
    total = error.sum()
    share = float(error[high].sum() / total) if total > 0 else float(high.mean())
    rho = float(spearman_rows(torch.from_numpy(spread)[None], torch.from_numpy(error)[None])[0])
    return SpreadError(float(high.mean()), share, rho)


def png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as PNG bytes (fast compression: these pictures are redrawn on every slider move)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
