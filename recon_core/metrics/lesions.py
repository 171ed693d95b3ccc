"""Per-image lesion measurements at a known site: the residual-map detector and a segmenter's call there.

The synthetic cohorts know where each lesion is (or, for an image without one, a sham site drawn
the same way): columns `SITE_COLUMNS`: `lesion` (1 present, 0 sham), `lesion_y`, `lesion_x`,
`lesion_radius` (a Gaussian σ in pixels), `lesion_amplitude` (the contrast it has, or would
have) and `lesion_background` (what the filter below reads at the site on the lesion-free clean
image). Two measurements are stored for every road, clean included, so the hallucination check
(`recon_core.fairness.hallucinations`) is computed from stored rows:

- `lesion_contrast`: the residual map's contrast at the site. A matched filter: a Gaussian of
  the site's σ in a window of ±max(2, ⌈3σ⌉) pixels, made zero-mean over the window
  (w0 = w − mean w, so a constant local background drops out); ĉ(x) = Σ w0·x / Σ w0·w is the
  least-squares amplitude of the template over a flat background. It is read on the residual
  map, the image minus the lesion-free clean image: by linearity ĉ(x) − `lesion_background`.
  Why the residual: at 32 px a nodule is 1–2 pixels wide and the anatomy under it projects onto
  the template with about −0.3 of its amplitude, so a filter on the image alone found only 39 %
  of the tiny cohort's clean nodules; on the residual the clean road reads the lesion itself
  (and 0 at a sham site), and a reconstruction reads what it kept of the lesion plus what it
  added there.
- `lesion_called` (cohorts with masks): the segmenter's call at the site, 1 when its predicted
  tumour mask has at least `CALL_PIXELS` pixels within `CALL_REACH` σ of the site (3σ: 1.5× the
  radius of the disc a σ stands for), else 0. The same rule at a true and at a sham site.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

SITE_COLUMNS = ("lesion", "lesion_y", "lesion_x", "lesion_radius", "lesion_amplitude", "lesion_background")
"""The columns a cohort with known lesion sites has (one site per image: the lesion, or a sham site)."""
CALL_PIXELS = 3
"""Fewest predicted tumour pixels near the site for the segmenter's call to count as 'found'."""
CALL_REACH = 3.0
"""How far from the site, in σ of the site, a predicted tumour pixel counts."""


def has_sites(rows: pd.DataFrame) -> bool:
    """Whether a cohort's rows carry known lesion sites (the synthetic cohorts do; real data does not)."""
    return all(column in rows for column in SITE_COLUMNS)


def _window(y: float, x: float, sigma: float, shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray]:
    """The window around a site (clipped to the image) and the Gaussian template in it (σ at least 0.3 pixel)."""
    half = max(2, math.ceil(3 * sigma))
    cy, cx = round(y), round(x)
    rows = slice(max(0, cy - half), min(shape[0], cy + half + 1))
    cols = slice(max(0, cx - half), min(shape[1], cx + half + 1))
    yy, xx = np.mgrid[rows, cols]
    return rows, cols, np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * max(sigma, 0.3) ** 2))


def matched_contrast(images: np.ndarray, y: np.ndarray, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(B,) amplitude estimates ĉ = Σ w0·x / Σ w0·w of a Gaussian template at each image's site, (B, H, W) input."""
    out = np.empty(len(images))
    for i, image in enumerate(images):
        rows, cols, template = _window(float(y[i]), float(x[i]), float(sigma[i]), image.shape)
        w0 = template - template.mean()
        out[i] = float((w0 * image[rows, cols]).sum() / (w0 * template).sum())
    return out


def lesion_contrast(images: torch.Tensor, sites: pd.DataFrame) -> np.ndarray:
    """(B,) residual-map contrast at each image's known site of (B, 1, H, W) images, `sites` the batch's rows in order:
    ĉ(image) − ĉ(lesion-free clean image)."""
    measured = matched_contrast(images[:, 0].detach().float().cpu().numpy(), sites["lesion_y"].to_numpy(float),
                                sites["lesion_x"].to_numpy(float), sites["lesion_radius"].to_numpy(float))
    return measured - sites["lesion_background"].to_numpy(float)


def lesion_called(masks: np.ndarray, sites: pd.DataFrame) -> np.ndarray:
    """(B,) 1.0 where a predicted (B, H, W) tumour mask has ≥ CALL_PIXELS pixels within CALL_REACH σ of the site."""
    yy, xx = np.mgrid[0:masks.shape[-2], 0:masks.shape[-1]]
    out = np.empty(len(masks))
    for i, (y, x, sigma) in enumerate(sites[["lesion_y", "lesion_x", "lesion_radius"]].to_numpy(float)):
        near = (yy - y) ** 2 + (xx - x) ** 2 <= (CALL_REACH * max(sigma, 0.5)) ** 2
        out[i] = float((masks[i].reshape(near.shape) > 0)[near].sum() >= CALL_PIXELS)
    return out


def lesion_metrics(output: torch.Tensor, sites: pd.DataFrame, masks: np.ndarray | None) -> dict[str, np.ndarray]:
    """A batch's per-image lesion columns: the site's truth and amplitude, the measured contrast, the segmenter's call.

    Empty when the cohort has no known sites (real data: the hallucination check is then unavailable).
    """
    if not has_sites(sites):
        return {}
    found = {"lesion": sites["lesion"].to_numpy(float), "lesion_amplitude": sites["lesion_amplitude"].to_numpy(float),
             "lesion_contrast": lesion_contrast(output, sites)}
    if masks is not None:
        found["lesion_called"] = lesion_called(np.asarray(masks), sites)
    return found
