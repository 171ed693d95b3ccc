"""Cubic-spline upsampling of small square fields, bit for bit what `scipy.ndimage.zoom(order=3)` returns, faster.

The synthetic X-ray cohort warps every subject with two 6×6 random fields zoomed to the image
size; scipy's zoom evaluates 16 taps per output pixel in a generic C loop and was most of a
256 px subject's cost. The same sum is done here per tap over whole images: for each output
pixel t = Σ over taps (i, j) in scipy's row-major order of (c[row i, col j] · wy[i]) · wx[j],
accumulated from 0.0 in that order, so every rounding is the one scipy makes and the images
(and the stored results and golden files that depend on them) stay unchanged. The weights are
scipy's cubic B-spline formula (ni_splines.c, get_spline_interpolation_weights) and the
coefficients come from scipy's own spline filter; hand-written because no library exposes the
per-tap weights. `tests/test_cohort_generation.py` pins the equality with scipy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage
from threadpoolctl import ThreadpoolController

ORDER = 3


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """The BLAS thread pools of this process, found once (a lookup per call would cost more than a zoom)."""
    return ThreadpoolController()


@lru_cache(maxsize=16)
def _taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first coefficient row of each output row, (size, 4) weights, (4, n + 3, size) column placement).

    Output pixel k sits at input coordinate k·(n − 1)/(size − 1) (zoom's default grid), as scipy
    computes it. Placement j holds weight wx[x, j] at padded column start(x) + 1 + j of column x:
    a product with it has one nonzero term per output, so a matrix product gives exactly c · wx.
    """
    zoom = np.divide(np.array([n - 1.0]), np.array([size - 1.0]))[0]
    cc = np.arange(size, dtype=np.float64) * zoom
    start = np.floor(cc).astype(np.intp) - ORDER // 2
    x = cc - np.floor(cc)  # scipy: x -= floor(x) for odd orders, then y = x, z = 1 − x
    z = 1.0 - x
    w1 = (x * x * (x - 2.0) * 3.0 + 4.0) / 6.0
    w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
    w0 = z * z * z / 6.0
    w3 = 1.0 - w0 - w1 - w2  # scipy: the last weight is 1 minus the others, subtracted in order
    weights = np.stack([w0, w1, w2, w3], axis=1)
    placement = np.zeros((ORDER + 1, n + 3, size))
    for j in range(ORDER + 1):
        placement[j, start + 1 + j, np.arange(size)] = weights[:, j]
    return start + 1, weights, placement


def cubic_zoom(fields: np.ndarray, size: int) -> np.ndarray:
    """(k, n, n) fields → (k, size, size) float64, each equal to `ndimage.zoom(field, size / n, order=3)`."""
    n = fields.shape[-1]
    coefficients = np.asarray(fields, dtype=np.float64)
    for axis in (1, 2):  # scipy's prefilter, axis by axis, each field on its own
        coefficients = ndimage.spline_filter1d(coefficients, ORDER, axis=axis, output=np.float64, mode="constant")
    # scipy mirrors taps past the edge (index −1 → 1, n → n − 2): numpy's 'reflect' padding
    padded = np.pad(coefficients, ((0, 0), (1, 2), (1, 2)), mode="reflect")
    first, weights, placement = _taps(n, size)
    out = np.zeros((len(fields), size, size))
    product = np.empty_like(out)
    with _blas().limit(limits=1, user_api="blas"):  # tiny products: threads only add waiting
        for i in range(ORDER + 1):
            rows = padded[:, first + i, :] * weights[:, i][None, :, None]  # c · wy, (k, size, n + 3)
            for j in range(ORDER + 1):
                np.matmul(rows, placement[j], out=product)  # (c · wy) · wx, exactly one term per pixel
                out += product
    return out
