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
from recon_core.fairness.mitigation import compare_to_base
from recon_core.fairness.multiple_testing import mitigation_q_values, q_values
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
    writes.replace_mitigation_effects(store, key, mitigation_effects(config, modality, labels, thresholds, finished,
                                                                     unit_rows))


def mitigation_effects(config: StudyConfig, modality: Modality, labels: tuple[str, ...], thresholds: dict[str, float],
                       finished: list[tuple[str, float]],
                       unit_rows: Callable[[str, float], pd.DataFrame]) -> pd.DataFrame:
    """Each finished variant cell against its base's cell at the same level (paired), with the mitigation families'
    q-values; empty when the run has no variant."""
    ev = config.evaluation
    done = set(finished)
    parts = []
    for name, level in finished:
        variant = config.reconstructors.variant(name)
        if variant is None or (variant[0], level) not in done:
            continue
        table = compare_to_base(unit_rows(name, level), unit_rows(variant[0], level), labels, thresholds,
                                attributes=ev.attributes, quality=modality.correlated_quality,
                                n_resamples=ev.n_bootstrap, ci_level=ev.ci_level, min_group_size=ev.min_group_size,
                                min_positives=ev.min_positives, min_negatives=ev.min_negatives, seed=config.seed)
        parts.append(table.assign(reconstructor=name, base=variant[0], level=level))
    if not parts:
        return pd.DataFrame(columns=queries.MITIGATION_COLUMNS)
    costs = (*modality.correlated_quality, *(h.metric for h in modality.curves[1:]))
    return mitigation_q_values(pd.concat(parts, ignore_index=True), modality.primary_test, costs)
