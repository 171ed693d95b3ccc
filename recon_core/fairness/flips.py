"""Decision flips between an image's clean road and its reconstruction, per image and per subgroup.

A flip is a changed decision at the fixed threshold: a finding *lost* (present, called on the
clean image, missed on the reconstruction: a new false negative) or *invented* (absent, not
called on the clean image, called on the reconstruction: a new false positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness import bootstrap as bs
from recon_core.fairness import resampling
from recon_core.fairness.groups import iter_groups
from recon_core.metrics import catalogue

KINDS = ("lost", "invented", "recovered", "corrected", "unchanged")


def flip_table(clean: pd.DataFrame, recon: pd.DataFrame, labels: Sequence[str],
               thresholds: dict[str, float]) -> pd.DataFrame:
    """One row per (image, label): scores on both roads, the change, and the kind of flip.

    Sorted for inspection: lost and invented findings first, then by the size of the score change.
    """
    clean = clean.sort_values("image_id").reset_index(drop=True)
    recon = recon.sort_values("image_id").reset_index(drop=True)
    if not np.array_equal(clean.image_id.to_numpy(), recon.image_id.to_numpy()):
        raise ValueError("clean and reconstructed rows cover different images")
    parts = []
    demographics = [c for c in recon.columns if not c.startswith(("score:", "target:"))
                    and c not in (*catalogue.IMAGE_COLUMNS, "modality")]
    for label in labels:
        before, after = clean[f"score:{label}"].to_numpy(), recon[f"score:{label}"].to_numpy()
        target = recon[f"target:{label}"].to_numpy()
        was, now = before >= thresholds[label], after >= thresholds[label]
        kind = np.select([(target == 1) & was & ~now, (target == 0) & ~was & now,
                          (target == 1) & ~was & now, (target == 0) & was & ~now],
                         list(KINDS[:4]), default="unchanged")
        parts.append(recon[demographics].assign(label=label, target=target, clean_score=before, recon_score=after,
                                                change=after - before, kind=kind,
                                                psnr=recon.get("psnr"), ssim=recon.get("ssim")))
    table = pd.concat(parts, ignore_index=True)
    table["order"] = table.kind.map({"lost": 0, "invented": 1}).fillna(2)
    return (table.assign(size=table.change.abs()).sort_values(["order", "size"], ascending=[True, False])
            .drop(columns=["order", "size"]).reset_index(drop=True))


def flip_rates(table: pd.DataFrame, attributes: Sequence[str], n_resamples: int = 1000,
               ci_level: float = 0.95, seed: int = 0, label: str | None = None) -> pd.DataFrame:
    """Per group: share of present findings lost and of absent findings invented, with bootstrap CIs.

    Resamples images (all labels of an image stay together); `label` restricts to one finding.
    """
    if label is not None:
        table = table[table.label == label]
    images = table.drop_duplicates("image_id").sort_values("image_id").reset_index(drop=True)
    position = pd.Series(np.arange(len(images)), index=images.image_id)
    weights = resampling.plan(images, attributes, n_resamples, seed)  # by subject, within demographic cells
    # per image: counts of present findings, of those lost; absent findings, of those invented
    at = position[table.image_id].to_numpy()
    counts = {name: np.bincount(at, weights=values.astype(float), minlength=len(images))
              for name, values in (("present", table.target == 1), ("lost", table.kind == "lost"),
                                   ("absent", table.target == 0), ("invented", table.kind == "invented"))}
    out = []
    for attribute, grp, mask in iter_groups(images, attributes):
        m = mask.astype(np.float64)
        for kind, denominator in (("lost", "present"), ("invented", "absent")):
            num, den = weights @ (counts[kind] * m), weights @ (counts[denominator] * m)
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
            lo, hi = bs.interval(rate[1:], ci_level) if not np.isnan(rate[0]) else (np.nan, np.nan)
            out.append(dict(kind=kind, attribute=attribute, grp=grp, rate=float(rate[0]), ci_low=lo, ci_high=hi,
                            flips=int(counts[kind][mask].sum()), of=int(counts[denominator][mask].sum())))
    return pd.DataFrame(out)


def changed_calls(scores: pd.DataFrame, thresholds: dict[str, float], clean: str) -> pd.DataFrame:
    """One image's findings whose call a reconstruction changed against the clean image's: lost or invented.

    `scores` is the image's long table (reconstructor, level, label, score, target; the clean road named
    `clean`); a call is score ≥ the label's threshold, as in `flip_table`. Only new errors are returned
    (a present finding lost, an absent one invented), largest score change first, so an example that shows
    a reconstruction inventing a finding can be pointed out where it is drawn.
    """
    columns = ["reconstructor", "level", "label", "kind", "clean_score", "score", "threshold", "target"]
    before = scores[scores.reconstructor == clean].set_index("label").score
    rows = scores[(scores.reconstructor != clean) & scores.label.isin(before.index)
                  & scores.label.isin(list(thresholds))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(clean_score=rows.label.map(before).astype(float), threshold=rows.label.map(thresholds))
    was, now = rows.clean_score >= rows.threshold, rows.score >= rows.threshold
    kind = np.select([(rows.target == 1) & was & ~now, (rows.target == 0) & ~was & now], ["lost", "invented"], "")
    changed = rows.assign(kind=kind)[kind != ""]
    order = (changed.score - changed.clean_score).abs().sort_values(ascending=False).index
    return changed.loc[order, columns].reset_index(drop=True)
