"""Chest X-ray at low dose: projection (or sinogram) physics, a generated or CSV cohort, a multi-label classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from recon_core.cohorts.base import CohortSource
from recon_core.cohorts.csv_xray import CsvChestSource
from recon_core.cohorts.synthetic_xray import LABELS, SyntheticChestSource
from recon_core.config import ConfigError, StudyConfig
from recon_core.diagnostics.task import TaskModel
from recon_core.diagnostics.user import study_classifier
from recon_core.modalities.base import Headline, Modality
from recon_core.physics.base import Acquisition
from recon_core.physics.xray_projection import ProjectionDose
from recon_core.physics.xray_sinogram import SinogramDose


class XRay(Modality):
    """Low-dose radiography: the level is the dose (photons); statistics per test image."""

    name = "xray"
    title = "X-ray (low-dose)"
    physics: ClassVar[dict[str, Callable[[StudyConfig], Acquisition]]] = {
        "projection": lambda c: ProjectionDose(c.seed, c.physics.attenuation_scale, c.physics.electronic_noise),
        "sinogram": lambda c: SinogramDose(c.seed, c.physics.n_angles),
    }
    sources: ClassVar[dict[str, Callable[[StudyConfig], CohortSource]]] = {
        "synthetic": lambda c: SyntheticChestSource(c.cohort, c.seed),
        "csv": lambda c: CsvChestSource(c.cohort, c.seed),
    }
    anatomies = ("radiograph", "procedural")
    synthetic_labels = LABELS
    unit = "image"
    unit_text = "test images"
    curves = (Headline("psnr", "", "Image quality: PSNR", "PSNR (dB)"),
              Headline("auroc", "mean", "Task: mean AUROC", "mean AUROC"))
    table_metrics = (Headline("ssim", "", "SSIM", "SSIM"),)
    group_metrics = (Headline("tpr", "mean", "Sensitivity (TPR, mean over findings)", "TPR at the fixed threshold"),)
    gap_metrics = (Headline("eo_gap", "mean", "Equal-opportunity gap (mean over findings)", "max − min TPR"),
                   Headline("eodd", "mean", "Equalized-odds gap (mean over findings)", "½ (TPR gap + FPR gap)"))
    added_metrics = ("auroc_added", "tpr_diff_added", "eodd_diff_added", "eo_gap_added")
    primary_test = "tpr_diff_added"
    lesion_finding = "nodule"  # the synthetic cohort's known lesion is its nodule

    def validate_source(self, config: StudyConfig) -> None:
        if config.cohort.source == "csv" and config.cohort.csv is None:
            raise ConfigError("cohort.csv: source 'csv' needs csv_path and image_root")

    def task_models(self, config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> list[TaskModel]:
        return [study_classifier(config, labels, device)]
