"""Where images and demographics come from: generated demo cohorts and real-data adapters, as cohort sources.

Which source a study uses is its modality's choice (`recon_core.modalities`).
"""

from recon_core.cohorts.base import SPLITS, Cohort, CohortSource
from recon_core.cohorts.demographics import CohortError

__all__ = ["SPLITS", "Cohort", "CohortError", "CohortSource"]
