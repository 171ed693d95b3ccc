"""Where images and demographics come from: the generated demo cohort or a real dataset."""

from __future__ import annotations

from recon_core.cohorts.base import SPLITS, Cohort
from recon_core.cohorts.demographics import CohortError
from recon_core.config import StudyConfig
from recon_core.progress import Progress, silent


def load_cohort(config: StudyConfig, progress: Progress = silent) -> Cohort:
    """The cohort a study config describes."""
    if config.cohort.source == "csv":
        from recon_core.cohorts.csv_xray import load_csv_cohort

        return load_csv_cohort(config.cohort, config.seed, progress)
    if config.cohort.source == "nifti":
        from recon_core.cohorts.nifti_mri import load_nifti_cohort

        return load_nifti_cohort(config.cohort, config.seed, progress)
    if config.modality == "mri":
        from recon_core.cohorts.synthetic_mri import generate_cohort as generate_mri

        return generate_mri(config.cohort, config.seed, progress)
    from recon_core.cohorts.synthetic_xray import generate_cohort

    return generate_cohort(config.cohort, config.seed, progress)


__all__ = ["SPLITS", "Cohort", "CohortError", "load_cohort"]
