"""The metric catalogue: every metric's name, human label, unit, direction and where it is computed.

One table read by the fairness summary (which metrics to aggregate, which are "worse when
higher"), the store schema (one column per per-image metric), and the pages, report and CLI
(labels and units). A new per-image metric is one line here plus its function.

Scopes:
- 'image'   one value per image, stored in `image_metrics` (PSNR, Dice, …);
- 'unit'    one value per statistical unit derived from stored image values (volume PSNR per patient);
- 'group'   one value per group of units, from scores and labels (AUROC, TPR, …), per finding label.
Kinds: 'quality' (against the clean image; none on the clean road), 'segmentation', 'task',
'uncertainty' (a sampler's posterior spread and its per-sample diagnostic calls; only where a
reconstructor draws several samples), 'helper' (stored to derive others, never shown), 'lesion' (at a
cohort's known lesion site, on every road, clean included; read by the hallucination check, never
aggregated by the summary; NaN for cohorts without sites).
Derived names are built from these: `<m>_diff` (a signed difference between groups: grp names
the contrast, 'F − M' or 'g − rest'), `<m>_gap` (max − min over groups, folded, descriptive),
`<m>_ratio` (min / max), `<m>_added` (reconstructed − clean, paired), `worst_<m>`; `eodd_diff`
(½ [ΔTPR + ΔFPR], signed), `eo_gap` (the TPR gap), `eodd` (½ [TPR gap + FPR gap]) and
`dice_skewed_error_ratio` ((1 − min Dice)/(1 − max Dice)) are named statistics of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric of the catalogue."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    scope: str
    kind: str
    description: str

    @property
    def per_label(self) -> bool:
        """Computed for each finding label (and their mean), not once per image."""
        return self.kind == "task"


CATALOGUE: tuple[Metric, ...] = (
    Metric("psnr", "PSNR", "dB", True, "image", "quality", "peak signal-to-noise ratio against the clean image"),
    Metric("ssim", "SSIM", "", True, "image", "quality", "structural similarity (Gaussian 11×11, σ 1.5)"),
    Metric("nmse", "NMSE", "", False, "image", "quality", "‖x̂ − x‖² / ‖x‖²"),
    Metric("mse", "MSE", "", False, "image", "helper", "mean squared error (for exact volume PSNR)"),
    Metric("signal", "mean square", "", True, "image", "helper", "mean square of the clean image (volume NMSE)"),
    Metric("psnr_volume", "Volume PSNR", "dB", True, "unit", "quality", "PSNR over all voxels of a patient"),
    Metric("nmse_volume", "Volume NMSE", "", False, "unit", "quality", "NMSE over all voxels of a patient"),
    Metric("dice", "Tumour Dice", "", True, "image", "segmentation",
           "overlap of predicted and true tumour; both empty → 1, one empty → 0"),
    Metric("hd95", "Tumour HD95", "pixels", False, "image", "segmentation",
           "95th-percentile Hausdorff distance; undefined (skipped) when a mask is empty"),
    Metric("spread_error_rho", "Spread–error rank correlation", "", True, "image", "uncertainty",
           "Spearman correlation over pixels of the posterior std with the error of the posterior mean"),
    Metric("interval_coverage", "95 % interval coverage", "", True, "image", "uncertainty",
           "share of pixels whose truth lies in the samples' 95 % prediction interval (calibrated: 0.95)"),
    Metric("posterior_std", "Posterior spread", "", False, "image", "uncertainty",
           "mean per-pixel standard deviation of the posterior samples"),
    Metric("sample_flip", "Sample flip rate", "", False, "image", "uncertainty",
           "share of posterior samples on which the classifier's call of some finding differs from the "
           "majority call of the samples (the posterior's own call)"),
    Metric("sample_dice_flip", "Sample Dice flip rate", "", False, "image", "uncertainty",
           "share of posterior samples whose tumour Dice differs from the reported reconstruction's by more "
           "than evaluation.sample_dice_change"),
    Metric("lesion", "Known lesion", "", True, "image", "lesion",
           "1 if the cohort put a lesion at the image's known site, 0 for a sham site (the same draw, no lesion)"),
    Metric("lesion_amplitude", "Lesion amplitude", "", True, "image", "lesion",
           "the contrast the known lesion has (or, at a sham site, would have) in the clean image"),
    Metric("lesion_contrast", "Lesion contrast at the site", "", True, "image", "lesion",
           "matched filter (zero-mean Gaussian of the site's σ, Σ w0·x / Σ w0·w) at the known site on the residual "
           "map: the image minus the lesion-free clean image"),
    Metric("lesion_called", "Segmenter's call at the site", "", True, "image", "lesion",
           "1 if the predicted tumour mask has ≥ 3 pixels within 3 σ of the known site (cohorts with masks)"),
    Metric("auroc", "AUROC", "", True, "group", "task", "area under the ROC curve of the scores"),
    Metric("tpr", "Sensitivity (TPR)", "", True, "group", "task", "true-positive rate at the fixed threshold"),
    Metric("fpr", "False-positive rate (FPR)", "", False, "group", "task", "false-positive rate at the threshold"),
    Metric("fnr", "Underdiagnosis (FNR)", "", False, "group", "task", "false-negative rate at the threshold"),
    Metric("ppv", "Precision (PPV)", "", True, "group", "task", "positive predictive value at the threshold"),
    Metric("sel", "Selection rate", "", True, "group", "task", "share of cases called positive at the threshold"),
    Metric("ece", "Calibration error (ECE)", "", False, "group", "task",
           "expected calibration error, 10 bins (grows as a group shrinks: not compared between groups)"),
)
BY_NAME = {m.name: m for m in CATALOGUE}

NAMED_GAPS = {"eo_gap": ("Equal-opportunity gap (max − min TPR)", "tpr"),
              "eodd": ("Equalized-odds gap (½ [TPR gap + FPR gap])", "tpr"),
              "eodd_diff": ("Average odds difference (½ [ΔTPR + ΔFPR]; opposite moves cancel)", "tpr"),
              "dice_skewed_error_ratio": ("Dice skewed error ratio", "dice")}
"""Statistics with names of their own: (label, the metric they are built from)."""
SIGNED_GAPS = ("tpr_diff", "eodd_diff", "auroc_diff", "fpr_diff", "ppv_diff", "sel_diff", "dice_diff", "hd95_diff")
"""Signed group differences, offered first: their change under reconstruction is tested."""
FAIRNESS_GAPS = (*SIGNED_GAPS, "eo_gap", "eodd", "auroc_gap", "dice_gap", "dice_skewed_error_ratio")
"""The gaps whose 'added by reconstruction' value the Fairness page offers (signed first; no synonyms)."""
_DERIVED = ((r"^worst_(.+)$", "worst group by {}"), (r"^(.+)_added$", "{} added"), (r"^(.+)_gap$", "{} gap"),
            (r"^(.+)_ratio$", "{} ratio (min / max)"), (r"^(.+)_diff$", "{} difference"))


def names(scope: str | None = None, kind: str | None = None) -> tuple[str, ...]:
    """Catalogue names of one scope and/or kind, in catalogue order."""
    return tuple(m.name for m in CATALOGUE if (scope is None or m.scope == scope) and (kind is None or m.kind == kind))


IMAGE_COLUMNS = names(scope="image")
"""Per-image metric columns of the store's `image_metrics` table."""
QUALITY = names(kind="quality")
SEGMENTATION = names(kind="segmentation")
TASK = names(kind="task")
UNCERTAINTY = names(kind="uncertainty")
HIGHER_IS_WORSE = frozenset(m.name for m in CATALOGUE if not m.higher_is_better)
THRESHOLD_RATES = frozenset({"tpr", "fpr", "fnr", "ppv", "sel"})
"""Rates at the fixed operating threshold: they can saturate at 0 or 1 for everyone when scores shift."""


def source(name: str) -> Metric:
    """The catalogue metric a stored metric is derived from: 'eo_gap_added' → tpr, 'dice_gap' → dice."""
    if name in BY_NAME:
        return BY_NAME[name]
    if name in NAMED_GAPS:
        return BY_NAME[NAMED_GAPS[name][1]]
    for pattern, _ in _DERIVED:
        match = re.match(pattern, name)
        if match:
            return source(match.group(1))
    raise KeyError(f"metric {name!r} is not in the catalogue and not derived from one")


def label(name: str) -> str:
    """A human name for any stored metric, derived ones included: 'eo_gap_added' → 'Equal-opportunity gap added'."""
    if name in NAMED_GAPS:
        return NAMED_GAPS[name][0]
    if name in BY_NAME:
        metric = BY_NAME[name]
        return f"{metric.label} ({metric.unit})" if metric.unit else metric.label
    for pattern, text in _DERIVED:
        match = re.match(pattern, name)
        if match:
            inner = match.group(1)
            return text.format(BY_NAME[inner].label if inner in BY_NAME else label(inner))
    return name
