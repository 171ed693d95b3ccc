"""Per-image calibration of a sampler's posterior spread: does its per-pixel std say where its error is?

For a reconstructor that draws n posterior samples per image (reported: their mean x̄, spread:
their per-pixel standard deviation s, unbiased), against the clean image x, over the pixels
inside the imaged body (clean > 0; `body`):
- `spread_error_rho`: Spearman rank correlation over the image's pixels between s and |x̄ − x|
  (does the spread rank the pixels as the error does; 0 when s or the error is constant);
- `interval_coverage`: the share of pixels where |x − x̄| ≤ t₀.₉₇₅,ₙ₋₁ · s · √(1 + 1/n), the 95 %
  prediction interval of one more draw from the samples' distribution: a calibrated posterior
  (the truth behaves like one more sample) covers 95 %, an overconfident one less;
- `posterior_std`: the mean per-pixel std.
And `calibration_bins`: per image, the sums behind a calibration curve (pixels, Σ s, Σ (x̄ − x)²)
in fixed bins of s, so that curves for any group of images are sums of stored rows.

Written here because no maintained library gives per-pixel spread–error calibration for
image posteriors (MONAI's metrics compare images, not a spread with an error; torchmetrics'
calibration errors are for class probabilities).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

COVERAGE_LEVEL = 0.95
BIN_EDGES = np.concatenate([[0.0], np.geomspace(1e-3, 0.3, 11), [np.inf]])
"""Fixed bins of the per-pixel posterior std (image units, [0, 1] data range): 12 bins, log-spaced."""


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman correlation of each row of a with the same row of b, (B, P) → (B,); 0 where a row is constant.

    Average ranks (ties share their mean rank) from SciPy's `rankdata`, then Pearson of the ranks
    row by row (`scipy.stats.spearmanr` correlates every row with every other one instead).
    """
    ra = stats.rankdata(a.double().cpu().numpy(), axis=1)
    rb = stats.rankdata(b.double().cpu().numpy(), axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    denominator = np.sqrt(np.square(ra).sum(1) * np.square(rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(1) / np.where(denominator > 0, denominator, 1), 0.0)


def body(clean: torch.Tensor) -> np.ndarray:
    """(B, P) pixels inside the imaged body (clean value > 0); an image without any counts everywhere.

    An MRI slice is half black background where data consistency makes spread and error both
    ~0: counted, those tied pixels would lift the rank correlation of unrelated maps (an 0.3
    share of such pixels lifts 0 to ≈ 0.65), so every statistic here is taken inside the body.
    """
    inside = clean.flatten(1).cpu().numpy() > 0
    inside[~inside.any(1)] = True
    return inside


def spread_calibration(mean: torch.Tensor, std: torch.Tensor, clean: torch.Tensor,
                       n_samples: int) -> dict[str, np.ndarray]:
    """Per image, inside the body: spread–error rank correlation, 95 % interval coverage and mean spread,
    from (B, 1, H, W) maps."""
    if n_samples < 2:
        raise ValueError(f"spread calibration needs at least 2 posterior samples per image, got {n_samples}")
    error = (mean - clean).abs().flatten(1).double().cpu().numpy()
    spread = std.flatten(1).double().cpu().numpy()
    inside = body(clean)
    half_width = float(stats.t.ppf(0.5 + COVERAGE_LEVEL / 2, n_samples - 1)) * np.sqrt(1 + 1 / n_samples)
    rho = [spearman_rows(torch.from_numpy(s[m])[None], torch.from_numpy(e[m])[None])[0]
           for s, e, m in zip(spread, error, inside, strict=True)]
    return {"spread_error_rho": np.array(rho),
            "interval_coverage": ((error <= half_width * spread) & inside).sum(1) / inside.sum(1),
            "posterior_std": (spread * inside).sum(1) / inside.sum(1)}


def calibration_bins(mean: torch.Tensor, std: torch.Tensor, clean: torch.Tensor) -> np.ndarray:
    """(B, bins, 3) per-image sums over the body's pixels in the fixed std bins `BIN_EDGES`: pixels, Σ std,
    Σ squared error."""
    spread = std.flatten(1).double().cpu().numpy()
    squared = (mean - clean).flatten(1).double().square().cpu().numpy()
    inside = body(clean).astype(float)
    which = np.digitize(spread, BIN_EDGES[1:-1])  # 0 … bins−1
    bins = len(BIN_EDGES) - 1
    out = np.zeros((len(spread), bins, 3))
    for i in range(len(spread)):
        out[i, :, 0] = np.bincount(which[i], weights=inside[i], minlength=bins)
        out[i, :, 1] = np.bincount(which[i], weights=spread[i] * inside[i], minlength=bins)
        out[i, :, 2] = np.bincount(which[i], weights=squared[i] * inside[i], minlength=bins)
    return out
