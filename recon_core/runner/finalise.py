"""Run-level finalisation: once every cell is in, the statistics that span the run are computed and written.

The multiple-testing correction (Benjamini–Hochberg within each stated family of tests) and
the quality–task correlations across cells need every cell, so they are computed once, here,
by the fairness module from stored rows, and written by plain writers. A run interrupted
before this step is finalised when it is resumed.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from recon_core.config import StudyConfig
from recon_core.fairness.correlation import quality_task_correlations
from recon_core.fairness.multiple_testing import q_values
from recon_core.fairness.summary import Minimums
from recon_core.modalities import Modality
from recon_core.store import CLEAN, Store, queries, writes


def finalise_run(store: Store, config: StudyConfig, modality: Modality, labels: tuple[str, ...],
                 thresholds: dict[str, float], unit_rows: Callable[[str, float], pd.DataFrame]) -> None:
    """Families and q-values of the run's tests and the quality–task correlations of its finished cells.

    `unit_rows(reconstructor, level)` gives a cell's stored rows per statistical unit; the
    correlated metrics are the modality's (its quality metrics against its headline tasks).
    """
    key = config.config_hash()
    tests = queries.added_tests(store, key)
    writes.write_q_values(store, key, q_values(tests, modality.primary_test, CLEAN))
    finished = sorted((r, lv) for r, lv in queries.done_cells(store, key) if r != CLEAN)
    ev = config.evaluation
    table = quality_task_correlations({cell: unit_rows(*cell) for cell in finished}, labels, thresholds,
                                      [a for a in ev.attributes if "×" not in a], n_resamples=ev.n_bootstrap,
                                      ci_level=ev.ci_level, seed=config.seed, quality=modality.correlated_quality,
                                      tasks=[h.metric for h in modality.curves[1:]],
                                      mins=Minimums(ev.min_group_size, ev.min_positives, ev.min_negatives))
    if not table.empty:
        writes.replace_correlations(store, key, table)
