"""Accelerated brain MRI: k-space undersampling, a generated or NIfTI cohort, a tumour segmenter and a grade classifier.

Statistics are per patient: a patient's slices are pooled into one row (mean Dice and quality,
median grade score, exact volume PSNR/NMSE) before any bootstrap, so resampling takes all of a
patient's slices together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pandas as pd
import torch

from recon_core.cohorts.base import CohortSource
from recon_core.cohorts.nifti_mri import NiftiBrainSource
from recon_core.cohorts.synthetic_mri import LABELS, SyntheticBrainSource
from recon_core.config import ConfigError, StudyConfig
from recon_core.diagnostics.task import TaskModel
from recon_core.diagnostics.user import study_classifier, study_segmenter
from recon_core.fairness.patients import patient_rows
from recon_core.modalities.base import Headline, Modality
from recon_core.physics.base import Acquisition
from recon_core.physics.mri_kspace import KspaceUndersampling


class MRI(Modality):
    """Accelerated MRI: the level is the acceleration (×, higher samples less); statistics per patient."""

    name = "mri"
    title = "MRI (accelerated)"
    physics: ClassVar[dict[str, Callable[[StudyConfig], Acquisition]]] = {
        "kspace": lambda c: KspaceUndersampling(c.seed, c.physics.mask, c.physics.centre_fraction,
                                                c.physics.kspace_snr),
    }
    sources: ClassVar[dict[str, Callable[[StudyConfig], CohortSource]]] = {
        "synthetic": lambda c: SyntheticBrainSource(c.cohort, c.seed),
        "nifti": lambda c: NiftiBrainSource(c.cohort, c.seed),
    }
    anatomies = ("mni152", "procedural")
    synthetic_labels = LABELS
    unit = "patient"
    unit_text = "patients (all of a patient's slices together)"
    curves = (Headline("psnr", "", "Image quality: PSNR", "PSNR (dB)"),
              Headline("dice", "", "Task: tumour Dice (mean per patient)", "Dice"),
              Headline("auroc", "mean", "Task: grade AUROC (patient = median slice score)", "grade AUROC"))
    table_metrics = (Headline("psnr_volume", "", "Volume PSNR", "volume PSNR (dB)"),
                     Headline("ssim", "", "SSIM (mean of slices)", "SSIM"))
    group_metrics = (Headline("dice", "", "Tumour Dice (mean per patient)", "Dice"),
                     Headline("tpr", "mean", "Sensitivity (TPR, high grade)", "TPR at the fixed threshold"))
    gap_metrics = (Headline("dice_gap", "", "Dice gap", "max − min Dice"),
                   Headline("eo_gap", "mean", "Equal-opportunity gap (grade)", "max − min TPR"),
                   Headline("eodd", "mean", "Equalized-odds gap (grade)", "½ (TPR gap + FPR gap)"))
    added_metrics = ("dice_added", "dice_diff_added", "tpr_diff_added", "auroc_added", "dice_gap_added",
                     "dice_skewed_error_ratio_added")
    primary_test = "dice_diff_added"
    fairness_model = "segmenter"  # mitigation's EODD term is the Dice gap; the adversary reads the tumour map

    def validate_source(self, config: StudyConfig) -> None:
        """The segmenter halves the slice once per channel after the first; a NIfTI source's slice range."""
        halvings = 2 ** (len(config.diagnostic.segmenter_channels) - 1)
        if config.cohort.image_size % halvings:
            raise ConfigError(f"cohort.image_size: {config.cohort.image_size} is not divisible by {halvings}, which "
                              f"the tumour segmenter's diagnostic.segmenter_channels "
                              f"{list(config.diagnostic.segmenter_channels)} need")
        if config.cohort.source != "nifti":
            return
        if config.cohort.nifti is None:
            raise ConfigError("cohort.nifti: source 'nifti' needs root and metadata_csv")
        for key in ("image_pattern", "mask_pattern"):
            pattern = getattr(config.cohort.nifti, key)
            try:
                pattern.format(id="P1")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"cohort.nifti.{key}: {pattern!r} is not a file pattern with {{id}} "
                                  f"as its only field ({type(exc).__name__}: {exc})") from None
        start, stop = config.cohort.nifti.slice_range
        if not 0 <= start < stop:
            raise ConfigError(f"cohort.nifti.slice_range: {[start, stop]} must be [start, stop) with 0 ≤ start < stop")

    def task_models(self, config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> list[TaskModel]:
        return [study_classifier(config, labels, device), study_segmenter(config, device)]

    def unit_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        return patient_rows(rows) if not rows.empty else rows
