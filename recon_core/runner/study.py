"""Runs a study: trains what it needs, then sweeps (reconstructor × level) cells, resuming finished ones.

The clean road runs first (the inherent baseline), then the untrained reconstructors so the
dashboard's first curves appear early, then each trained reconstructor as soon as it is fit.
Each cell lands in the store with its aggregates before the next starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from recon_core.cohorts import Cohort, load_cohort
from recon_core.config import StudyConfig
from recon_core.diagnostics import Classifier, choose_thresholds
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.fairness import summarise_cell
from recon_core.fairness.correlation import quality_task_correlations
from recon_core.fairness.patients import patient_rows
from recon_core.physics import Acquisition, build_physics
from recon_core.progress import Progress, silent
from recon_core.reconstructors import Reconstructor, build_reconstructor
from recon_core.runner.evaluate import evaluate_cell, pick_examples
from recon_core.store import CLEAN, Store, queries, writes


@dataclass
class TrainedModels:
    """What a sweep needs: the cohort, physics, classifier with thresholds, and reconstructors."""

    cohort: Cohort
    physics: Acquisition
    classifier: Classifier
    thresholds: dict[str, float]
    reconstructors: dict[str, Reconstructor]
    segmenter: Segmenter | None = None  # MRI only


def unit_rows(rows: pd.DataFrame, modality: str) -> pd.DataFrame:
    """The rows statistics are computed on: images for X-ray, patients (their slices pooled) for MRI."""
    return patient_rows(rows) if modality == "mri" and not rows.empty else rows


def train_models(config: StudyConfig, checkpoint_dir: Path, device: torch.device,
                 progress: Progress = silent, fit_reconstructors: bool = True) -> TrainedModels:
    """Loads the cohort, fits (or loads) the classifier and thresholds, and the reconstructors."""
    cohort = load_cohort(config, progress)
    physics = build_physics(config)
    classifier = Classifier(config, cohort.labels, device)
    rows, images = cohort.split("diag_train")
    classifier.fit(images, cohort.targets(rows), checkpoint_dir, progress)
    segmenter = None
    if config.modality == "mri":
        segmenter = Segmenter(config, device)
        segmenter.fit(images, cohort.split_masks("diag_train"), checkpoint_dir, progress)
    val_rows, val_images = cohort.split("val")
    val_scores = torch.cat([classifier.predict(torch.from_numpy(val_images[i:i + 64][:, None]).to(device))
                            for i in range(0, len(val_images), 64)]).cpu().numpy()
    val = val_rows.assign(**{f"score:{lb}": val_scores[:, j] for j, lb in enumerate(cohort.labels)},
                          **{f"target:{lb}": val_rows[lb] for lb in cohort.labels})
    val = unit_rows(val[["image_id", "subject_id", "sex", "age", "age_band", *[c for c in val if ":" in c]]],
                    config.modality)  # MRI: thresholds on patient scores, where decisions are made
    thresholds = choose_thresholds(val[[f"target:{lb}" for lb in cohort.labels]].to_numpy(dtype=float),
                                   val[[f"score:{lb}" for lb in cohort.labels]].to_numpy(dtype=float),
                                   cohort.labels)
    reconstructors = {name: build_reconstructor(name, config, device) for name in config.reconstructors.names}
    if fit_reconstructors:
        _, train_images = cohort.split("recon_train")
        for recon in reconstructors.values():
            if recon.trainable:
                recon.fit(train_images, physics, checkpoint_dir, progress)
    return TrainedModels(cohort, physics, classifier, thresholds, reconstructors, segmenter)


def _run_cell(store: Store, key: str, config: StudyConfig, models: TrainedModels, name: str, level: float,
              device: torch.device, example_ids: list[str], progress: Progress,
              reconstruction_cache: Path | None = None) -> None:
    rows, images = models.cohort.split("test")
    recon = None if name == CLEAN else models.reconstructors[name]
    extra = list(config.cohort.csv.extra_attributes) if config.cohort.csv else []
    if recon is None and extra:
        writes.write_attributes(store, key, rows.melt(id_vars="image_id", value_vars=extra,
                                                      var_name="attribute", value_name="value"))
    stage = "clean images" if recon is None else f"{name} at {level:g} {models.physics.level_unit}"
    masks = models.cohort.split_masks("test") if models.segmenter is not None else None
    result = evaluate_cell(rows, images, models.cohort.labels, models.classifier, models.physics, recon,
                           level, device, config.evaluation.batch_size, example_ids, config.modality,
                           progress, stage, models.segmenter, masks, reconstruction_cache)
    writes.write_cell_rows(store, key, name, level, result.metrics, result.scores, result.examples)
    # Aggregates come from the stored rows, never from in-memory state; MRI rows become patient rows.
    stored = unit_rows(queries.image_rows(store, key, name, level), config.modality)
    clean = None if recon is None else unit_rows(queries.image_rows(store, key, CLEAN, 0.0), config.modality)
    ev = config.evaluation
    summary = summarise_cell(stored, models.cohort.labels, models.thresholds, clean=clean,
                             attributes=ev.attributes, n_resamples=ev.n_bootstrap, ci_level=ev.ci_level,
                             min_group_size=ev.min_group_size, seed=config.seed)
    writes.finish_cell(store, key, name, level, summary, result.seconds, len(rows) / result.seconds)
    writes.write_q_values(store, key)
    if recon is not None:
        _update_correlations(store, key, config, models)


def _update_correlations(store: Store, key: str, config: StudyConfig, models: TrainedModels) -> None:
    """Quality–task correlations over every reconstructed cell stored so far (from stored rows)."""
    finished = [(r, lv) for r, lv in queries.done_cells(store, key) if r != CLEAN]
    cells = {(r, lv): unit_rows(queries.image_rows(store, key, r, lv), config.modality) for r, lv in sorted(finished)}
    single = [a for a in config.evaluation.attributes if "×" not in a]
    ev = config.evaluation
    table = quality_task_correlations(cells, models.cohort.labels, models.thresholds, single,
                                      n_resamples=ev.n_bootstrap, ci_level=ev.ci_level, seed=config.seed)
    if not table.empty:
        writes.replace_correlations(store, key, table)


def run_study(config: StudyConfig, store: Store, checkpoint_dir: Path, device: torch.device,
              progress: Progress = silent) -> str:
    """Trains, sweeps and stores a study; returns its config hash. Finished cells are skipped."""
    start = time.perf_counter()
    key = config.config_hash()
    physics = build_physics(config)
    writes.register_run(store, config, physics.level_name, physics.level_unit)
    try:
        models = train_models(config, checkpoint_dir, device, progress, fit_reconstructors=False)
        writes.write_thresholds(store, key, models.thresholds)
        done = queries.done_cells(store, key)
        test_rows, _ = models.cohort.split("test")
        example_ids = pick_examples(test_rows, models.cohort.labels, config.evaluation.n_examples)
        levels = sorted(config.physics.levels, reverse=True)
        order = [CLEAN, *sorted(models.reconstructors, key=lambda n: models.reconstructors[n].trainable)]
        _, train_images = models.cohort.split("recon_train")
        for name in order:
            cell_levels = [0.0] if name == CLEAN else levels
            todo = [lv for lv in cell_levels if (name, float(lv)) not in done]
            if not todo:
                continue
            if name != CLEAN and models.reconstructors[name].trainable:
                models.reconstructors[name].fit(train_images, models.physics, checkpoint_dir, progress)
            for level in todo:
                _run_cell(store, key, config, models, name, float(level), device, example_ids, progress,
                          checkpoint_dir.parent / "reconstructions")
    except KeyboardInterrupt:
        writes.set_run_status(store, key, "interrupted", message="stopped by the user; run again to resume")
        raise
    except Exception as exc:
        writes.set_run_status(store, key, "failed", message=f"{type(exc).__name__}: {exc}")
        raise
    writes.set_run_status(store, key, "done", seconds=time.perf_counter() - start)
    progress("done", 1, 1)
    return key
