"""The bootstrap's resampling plan for one cohort: which rows are drawn together, and within which strata.

- **Unit**: a subject. A cohort with several images per subject (a CSV of chest X-rays with
  follow-ups) is resampled by subject, all of a subject's images together (a cluster
  bootstrap); one image per subject reduces to resampling images.
- **Strata**: the subject's demographic cell (every attribute the study groups by), so group
  sizes are fixed as in the study; with `by_class`, for a cohort of one image per subject, also
  the image's finding pattern (which labels are present), so a group keeps its positives and
  negatives and no resample is lost for a group without positives. Class strata suit rates that
  condition on the class (TPR, FPR, AUROC); they would hide the sampling variation of the
  prevalence, so statistics that depend on it (selection rate, PPV, calibration, image means)
  use the demographic strata alone (measured on the X-ray demo: a selection-rate difference got
  p = 10⁻¹¹⁹ with class strata).

The plan depends only on the rows' ids, demographics and labels (the same on every road of a
run) and the seed, so every cell of a study and its clean baseline share one weight matrix:
"added" statistics are paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness import bootstrap as bs
from recon_core.fairness.groups import JOIN
from recon_core.seeding import numpy_rng


def clustered(rows: pd.DataFrame) -> bool:
    """True when some subject has several rows (then subjects, not rows, are resampled)."""
    return "subject_id" in rows and rows["subject_id"].notna().all() and rows["subject_id"].duplicated().any()


def plan(rows: pd.DataFrame, attributes: Sequence[str], labels: Sequence[str], n_resamples: int,
         seed: int, by_class: bool = True) -> np.ndarray:
    """(1 + n_resamples, len(rows)) weights of the stratified (cluster) bootstrap of `rows`, row 0 all ones.

    Rows must be in a fixed order (the summaries sort them by image id).
    """
    n = len(rows)
    by_subject = clustered(rows)
    unit_of = rows["subject_id"].astype(str) if by_subject else pd.Series(np.arange(n).astype(str), index=rows.index)
    codes, uniques = pd.factorize(unit_of, sort=True)
    columns = sorted({part for attribute in attributes for part in attribute.split(JOIN) if part in rows})
    key = rows[columns].astype(str).agg("|".join, axis=1) if columns else pd.Series("", index=rows.index)
    if by_class and not by_subject:  # one image per unit: its finding pattern joins the stratum
        targets = [f"target:{lb}" for lb in labels if f"target:{lb}" in rows]
        if targets:
            key = key + "|" + rows[targets].astype(str).agg("".join, axis=1)
    first = pd.Series(key.to_numpy()).groupby(codes).first().reindex(range(len(uniques)))
    strata = pd.factorize(first, sort=True)[0]
    stream = "bootstrap" if by_class else "bootstrap-groups"
    return bs.stratified_weights(codes, strata, n_resamples, numpy_rng(seed, stream, n))
