"""The hallucination check on known truth: lesions a reconstruction erases, lesion-like structures it invents.

The synthetic cohorts put a lesion of known place, size and contrast into some clean images and
give every other image a sham site drawn the same way (`recon_core.metrics.lesions`). For one
reconstructed cell against the clean road, per image and per detector:

- **erased**: a lesion is present, the detector finds it on the clean image and not on the
  reconstruction; a rate over the images with a lesion found on the clean image;
- **invented**: no lesion, the detector finds nothing on the clean image but finds one on the
  reconstruction; a rate over the images without a lesion and with nothing found on the clean image.

Detectors (`RULES` says each rule in words, returned with the rates):

- 'diagnostic model': the study's own diagnostic model. With a classifier (X-ray), its score of
  the lesion's finding (`nodule`) against the run's stored operating threshold: a call about the
  whole image, so an 'invented' nodule may be called anywhere in it. With a segmenter (MRI), its
  call at the site (`lesion_called`: ≥ 3 predicted tumour pixels within 3 σ of the site).
- 'residual map': the matched-filter contrast at the known site on the residual map, the image
  minus the lesion-free clean image (`lesion_contrast`), against the lesion's amplitude: found
  when ĉ / amplitude ≥ `FOUND_SHARE` (½), i.e. at least half the lesion's contrast, of its sign,
  is there. So on the clean road a lesion is found where it shows at least half its nominal
  amplitude and a sham site never is; an image whose amplitude is unknown is not judged.

Everything comes from stored per-image rows; groups and bootstrap CIs follow `flips.flip_rates`
(subjects resampled within demographic cells, so an MRI patient's slices stay together).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness import bootstrap as bs
from recon_core.fairness import resampling
from recon_core.fairness.groups import iter_groups

DIAGNOSTIC, RESIDUAL = "diagnostic model", "residual map"
DETECTORS = (DIAGNOSTIC, RESIDUAL)
FOUND_SHARE = 0.5
"""The residual map finds a lesion where at least this share of its amplitude is measured at the site."""
RULES = {
    DIAGNOSTIC: "the diagnostic model's own call: the classifier's score of the lesion's finding at or above the "
                "run's operating threshold (a call about the whole image, not the site), or the segmenter marking "
                "≥ 3 tumour pixels within 3 σ of the site",
    RESIDUAL: f"matched filter at the known site (zero-mean Gaussian of the site's σ): contrast / lesion amplitude "
              f"≥ {FOUND_SHARE:g}",
}
"""Each detector's 'found' rule in words, as the rates state it."""
RATE_COLUMNS = ["detector", "rule", "kind", "attribute", "grp", "rate", "ci_low", "ci_high", "count", "of"]


def _found(rows: pd.DataFrame, detector: str, finding: str | None, thresholds: dict[str, float]) -> np.ndarray:
    """Per image, 1.0 where `detector` finds a lesion at the site, 0.0 where not, NaN where it cannot say."""
    if detector == RESIDUAL:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = rows["lesion_contrast"].to_numpy(float) / rows["lesion_amplitude"].to_numpy(float)
        return np.where(np.isfinite(ratio), (ratio >= FOUND_SHARE).astype(float), np.nan)
    if "lesion_called" in rows and rows["lesion_called"].notna().any():
        return rows["lesion_called"].to_numpy(float)
    if finding is None or f"score:{finding}" not in rows or finding not in thresholds:
        return np.full(len(rows), np.nan)
    score = rows[f"score:{finding}"].to_numpy(float)
    return np.where(np.isnan(score), np.nan, (score >= thresholds[finding]).astype(float))


def hallucination_table(clean: pd.DataFrame, recon: pd.DataFrame, thresholds: dict[str, float],
                        finding: str | None) -> pd.DataFrame:
    """One row per (image, detector): the known truth, found on the clean image and on the reconstruction, the kind.

    `clean`/`recon` are a cell's stored per-image rows (`queries.image_rows`) with the lesion
    columns; `finding` is the label whose classifier score is the diagnostic model's call (None
    where a segmenter calls at the site). Kind: 'erased', 'invented', or 'kept' (no change),
    'recovered' (found only on the reconstruction, lesion present), 'removed' (found only on the
    clean image, no lesion), 'unjudged' (a side the detector cannot say).
    """
    clean = clean.sort_values("image_id").reset_index(drop=True)
    recon = recon.sort_values("image_id").reset_index(drop=True)
    if not np.array_equal(clean.image_id.to_numpy(), recon.image_id.to_numpy()):
        raise ValueError("clean and reconstructed rows cover different images")
    keep = [c for c in ("image_id", "subject_id", "sex", "age", "age_band") if c in recon]
    keep += [c for c in recon if c not in keep and not c.startswith(("score:", "target:")) and c != "modality"
             and recon[c].dtype == object]  # further group attributes (e.g. from a real dataset's table)
    parts = []
    for detector in DETECTORS:
        before, after = _found(clean, detector, finding, thresholds), _found(recon, detector, finding, thresholds)
        lesion = recon["lesion"].to_numpy(float)
        judged = ~np.isnan(before) & ~np.isnan(after) & ~np.isnan(lesion)
        was, now = before == 1, after == 1
        kind = np.select([~judged, (lesion == 1) & was & ~now, (lesion == 0) & ~was & now,
                          (lesion == 1) & ~was & now, (lesion == 0) & was & ~now],
                         ["unjudged", "erased", "invented", "recovered", "removed"], default="kept")
        parts.append(recon[keep].assign(detector=detector, lesion=lesion, found_clean=before, found_recon=after,
                                        contrast_clean=clean["lesion_contrast"].to_numpy(float),
                                        contrast_recon=recon["lesion_contrast"].to_numpy(float),
                                        amplitude=recon["lesion_amplitude"].to_numpy(float), kind=kind))
    return pd.concat(parts, ignore_index=True)


def hallucination_rates(table: pd.DataFrame, attributes: Sequence[str], n_resamples: int = 1000,
                        ci_level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per detector, kind and group: the erased / invented rate with a bootstrap CI, its count and denominator.

    Erased: over images with a lesion that the detector found on the clean image; invented: over
    images without one where it found nothing on the clean image. A group with no such image has
    rate NaN (not 0). Columns: `RATE_COLUMNS` (`rule` states the detector's rule in words).
    """
    images = table.drop_duplicates("image_id").sort_values("image_id").reset_index(drop=True)
    weights = resampling.plan(images, attributes, n_resamples, seed)  # by subject, within demographic cells
    out = []
    for detector in DETECTORS:
        rows = table[table.detector == detector].set_index("image_id").reindex(images.image_id)
        lesion, was, now = rows.lesion.to_numpy(), rows.found_clean.to_numpy(), rows.found_recon.to_numpy()
        judged = (rows.kind != "unjudged").to_numpy()
        counts = {"erased": (judged & (lesion == 1) & (was == 1) & (now == 0), judged & (lesion == 1) & (was == 1)),
                  "invented": (judged & (lesion == 0) & (was == 0) & (now == 1), judged & (lesion == 0) & (was == 0))}
        for attribute, grp, mask in iter_groups(images, attributes):
            for kind, (hits, eligible) in counts.items():
                num, den = weights @ (hits & mask).astype(float), weights @ (eligible & mask).astype(float)
                with np.errstate(invalid="ignore", divide="ignore"):
                    rate = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
                lo, hi = bs.interval(rate[1:], ci_level) if not np.isnan(rate[0]) else (np.nan, np.nan)
                out.append(dict(detector=detector, rule=RULES[detector], kind=kind, attribute=attribute, grp=grp,
                                rate=float(rate[0]), ci_low=lo, ci_high=hi, count=int((hits & mask).sum()),
                                of=int((eligible & mask).sum())))
    return pd.DataFrame(out, columns=RATE_COLUMNS)
