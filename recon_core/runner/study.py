"""Runs a study: trains what it needs, sweeps (reconstructor × level) cells, resumes finished ones, finalises the run.

The clean road runs first (the inherent baseline), then the untrained reconstructors so the
dashboard's first curves appear early, then each trained reconstructor as soon as it is fit.
Each cell lands in the store with its aggregates before the next starts; the statistics that
span the run (q-values, quality–task correlations) are computed once every cell is in.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pandas as pd
import threadpoolctl
import torch

from recon_core.cohorts import Cohort, CohortError
from recon_core.config import StudyConfig
from recon_core.diagnostics import TaskModel, choose_thresholds, scorer
from recon_core.diagnostics.thresholds import ThresholdError
from recon_core.fairness import STATISTICS_VERSION, summarise_cell
from recon_core.mitigation.variant import MitigatedReconstructor
from recon_core.modalities import Modality, get_modality
from recon_core.models.batches import SplitData
from recon_core.models.checkpoints import CheckpointError
from recon_core.models.contract import TrainableModel
from recon_core.models.user_models import UserModelError
from recon_core.physics import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors import Reconstructor, build_reconstructor
from recon_core.runner.evaluate import CellResult, evaluate_cell, pick_examples
from recon_core.runner.finalise import finalise_run
from recon_core.runner.inputs import KeptInputs
from recon_core.runner.model_cards import model_cards, with_model_hashes
from recon_core.store import CLEAN, Store, queries, writes


@dataclass
class TrainedModels:
    """What a sweep needs: modality, cohort, physics, task models with the classifier's thresholds, reconstructors."""

    modality: Modality
    cohort: Cohort
    physics: Acquisition
    task_models: list[TaskModel]
    thresholds: dict[str, float]
    reconstructors: dict[str, Reconstructor]

    @property
    def classifier(self) -> TaskModel:
        """The task model that scores labelled findings (its decisions use the thresholds)."""
        return scorer(self.task_models)


def split_data(cohort: Cohort, split: str, physics: Acquisition | None = None) -> SplitData:
    """One split of the cohort with its rows and masks, as models train and are tested on it."""
    rows, images = cohort.split(split)
    masks = cohort.split_masks(split) if cohort.masks is not None else None
    return SplitData(rows, images, cohort.labels, masks, physics)


def operating_thresholds(modality: Modality, cohort: Cohort, classifier: TaskModel,
                         batch_size: int = 64) -> dict[str, float]:
    """Each label's threshold: as its maker gave it (a user's classifier), else its equal-error threshold on
    clean validation data, per statistical unit (MRI: patients). All given: the validation split is not read."""
    given = classifier.given_thresholds()
    labels = tuple(lb for lb in cohort.labels if lb not in given)
    if not labels:
        return {lb: given[lb] for lb in cohort.labels}
    val = split_data(cohort, "val")
    scores = torch.cat([torch.from_numpy(classifier.evaluate(torch.from_numpy(val.images[i:i + batch_size][:, None]),
                                                             None).scores)
                        for i in range(0, len(val), batch_size)]).numpy()
    rows = val.rows.assign(**{f"score:{lb}": scores[:, j] for j, lb in enumerate(cohort.labels) if lb in labels},
                           **{f"target:{lb}": val.rows[lb] for lb in labels})
    rows = modality.unit_rows(rows[["image_id", "subject_id", "sex", "age", "age_band",
                                    *[c for c in rows if ":" in c]]])
    chosen = choose_thresholds(rows[[f"target:{lb}" for lb in labels]].to_numpy(dtype=float),
                               rows[[f"score:{lb}" for lb in labels]].to_numpy(dtype=float), labels)
    return {lb: given[lb] if lb in given else chosen[lb] for lb in cohort.labels}


def train_models(config: StudyConfig, checkpoint_dir: Path, device: torch.device,
                 progress: Progress = silent, fit_reconstructors: bool = True) -> TrainedModels:
    """Loads the cohort, fits (or loads) the task models and thresholds, and the reconstructors."""
    modality = get_modality(config.modality)
    cohort = modality.cohort_source(config).load(progress)
    physics = modality.build_physics(config)
    progress("building the models", 0, 1)
    task_models = modality.task_models(config, cohort.labels, device)
    diag_train = split_data(cohort, "diag_train")
    for model in task_models:
        model.fit(diag_train, checkpoint_dir, progress)
    progress("choosing thresholds", 0, 1)
    models = TrainedModels(modality, cohort, physics, task_models, {},
                           {name: build_reconstructor(name, config, device) for name in config.reconstructors.names})
    models.thresholds = operating_thresholds(modality, cohort, models.classifier)
    if fit_reconstructors:
        for recon in models.reconstructors.values():
            fit_reconstructor(recon, models, checkpoint_dir, progress)
    return models


def fit_reconstructor(recon: Reconstructor, models: TrainedModels, checkpoint_dir: Path, progress: Progress) -> None:
    """Fits (or loads) a trainable reconstructor on the reconstructor-training split, the task models at hand, frozen
    (a mitigation variant also gets the classifier's operating thresholds, where its soft decisions cut)."""
    if isinstance(recon, MitigatedReconstructor):
        recon.thresholds = dict(models.thresholds)
    if isinstance(recon, TrainableModel):
        recon.fit(split_data(models.cohort, "recon_train", models.physics), checkpoint_dir, progress,
                  frozen={model.name: model for model in models.task_models})


def statistics_beside(device: torch.device) -> bool:
    """Whether cells' statistics run in other processes beside the models: yes for a GPU; a CPU's cores run them."""
    return device.type != "cpu"


def statistics_processes() -> ProcessPoolExecutor:
    """Processes for cells' statistics beside a GPU: half the cores, at most 8, one BLAS thread each.

    Started by a fork server (never a fork of a process that holds a CUDA context).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max(1, min(8, (os.cpu_count() or 2) // 2)), mp_context=context,
                               initializer=one_thread_each)


def one_thread_each() -> None:
    """A statistics process's BLAS and torch on one thread: several processes share the cores.

    Runs in the new process after this module (hence NumPy and torch) is imported to unpickle it,
    so the libraries it limits are loaded.
    """
    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)


class CellEvaluator:
    """Evaluates cells without touching the store: the test split, examples and kept inputs of one run.

    The local executor holds one; a Ray worker builds its own from the config and the shared
    checkpoints, so a cell evaluated there is the one evaluated here (per-image seeded noise).
    """

    def __init__(self, config: StudyConfig, models: TrainedModels, device: torch.device, cache_root: Path,
                 progress: Progress) -> None:
        self.config, self.models, self.device = config, models, device
        self.cache_root, self.progress = cache_root, progress
        self.test = split_data(models.cohort, "test")
        self.example_ids = pick_examples(self.test.rows, models.cohort.labels, config.evaluation.n_examples)
        self.kept = KeptInputs(self.test)
        """Each level's degraded test inputs, drawn once for all the reconstructors of the run."""

    def __call__(self, name: str, level: float) -> CellResult:
        """One cell's per-image rows, scores, example pixels and timing (the reconstructor already fit)."""
        models = self.models
        recon = None if name == CLEAN else models.reconstructors[name]
        stage = "clean images" if recon is None else f"{name} at {level:g} {models.physics.level_unit}"
        return evaluate_cell(self.test, models.task_models, models.physics, recon, level, self.device,
                             self.config.evaluation.batch_size, self.example_ids, self.progress, stage,
                             self.cache_root, self.kept, self.config.evaluation.precision, models.thresholds,
                             self.config.evaluation.sample_dice_change)


class Sweep:
    """The cells of one run: evaluates each, stores its rows, summarises them from the store, keeps unit rows.

    Beside a GPU, cells' statistics (bootstrap, about a second of CPU work each) are computed in
    other processes while the device evaluates the next cells; this process alone touches the
    store, and a cell is marked done only when its aggregates are written (`land`), so a stopped
    run resumes it.
    """

    def __init__(self, store: Store, config: StudyConfig, models: TrainedModels, device: torch.device,
                 cache_root: Path, progress: Progress) -> None:
        self.store, self.config, self.models, self.device = store, config, models, device
        self.key = config.config_hash()
        self.progress = progress
        self.evaluate = CellEvaluator(config, models, device, cache_root, progress)
        self.test = self.evaluate.test
        self.unit_rows: dict[tuple[str, float], pd.DataFrame] = {}
        """Each cell's stored rows as the statistics see them, read once per run."""
        ev = config.evaluation
        self.summarise = partial(summarise_cell, labels=models.cohort.labels, thresholds=models.thresholds,
                                 attributes=ev.attributes, n_resamples=ev.n_bootstrap, ci_level=ev.ci_level,
                                 min_group_size=ev.min_group_size, min_positives=ev.min_positives,
                                 min_negatives=ev.min_negatives, seed=config.seed)
        """A cell's aggregates from its unit rows (and the clean road's, `clean=`): picklable, for other processes."""
        self.statistics = statistics_processes() if statistics_beside(device) else None
        self.unfinished: deque[tuple[str, float, float, int, Future[pd.DataFrame]]] = deque()

    def rows(self, reconstructor: str, level: float) -> pd.DataFrame:
        """A finished cell's stored rows per statistical unit (from the store the first time, then kept)."""
        if (reconstructor, level) not in self.unit_rows:
            self.unit_rows[reconstructor, level] = self.models.modality.unit_rows(
                queries.image_rows(self.store, self.key, reconstructor, level))
        return self.unit_rows[reconstructor, level]

    def run_cell(self, name: str, level: float) -> None:
        """One cell: evaluated here, then landed (stored, summarised)."""
        self.land_cell(name, level, self.evaluate(name, level))

    def land_cell(self, name: str, level: float, result: CellResult) -> None:
        """An evaluated cell (here or on a Ray worker) stored, then its aggregates computed from the stored rows."""
        extra = list(self.config.cohort.csv.extra_attributes) if self.config.cohort.csv else []
        if name == CLEAN and extra:
            writes.write_attributes(self.store, self.key, self.test.rows.melt(
                id_vars="image_id", value_vars=extra, var_name="attribute", value_name="value"))
        result.metrics.insert(0, "modality", self.models.modality.name)
        writes.write_cell_rows(self.store, self.key, name, level, result.metrics, result.scores, result.examples,
                               result.samples, result.calibration)
        rows, clean = self.rows(name, level), None if name == CLEAN else self.rows(CLEAN, 0.0)
        if self.statistics is None:
            self._finish(name, level, result.seconds, len(self.test), self.summarise(rows, clean=clean))
            return
        self.unfinished.append((name, level, result.seconds, len(self.test),
                                self.statistics.submit(self.summarise, rows, clean=clean)))
        self.land(wait=False)

    def fail_cell(self, name: str, level: float, message: str) -> None:
        """A cell whose model failed: marked failed with its reason (nothing of it stored); the others go on."""
        writes.fail_cell(self.store, self.key, name, level, message)

    def land(self, wait: bool = True) -> None:
        """Writes the aggregates of cells whose statistics are ready (all of them when `wait`), in order."""
        while self.unfinished and (wait or self.unfinished[0][-1].done()):
            name, level, seconds, images, future = self.unfinished.popleft()
            self._finish(name, level, seconds, images, future.result())

    def salvage(self, wait: bool) -> None:
        """A stopping run's statistics: every cell whose statistics succeeded lands (waiting for running ones
        when `wait`); a failed or unfinished one stays unfinished and is evaluated again on resume."""
        while self.unfinished:
            name, level, seconds, images, future = self.unfinished.popleft()
            if (wait or future.done()) and not future.cancelled() and future.exception() is None:
                self._finish(name, level, seconds, images, future.result())

    def close(self) -> None:
        """Stops the statistics processes (cells not landed stay unfinished and are evaluated again on resume)."""
        if self.statistics is not None:
            self.statistics.shutdown(wait=True, cancel_futures=True)

    def _finish(self, name: str, level: float, seconds: float, images: int, aggregates: pd.DataFrame) -> None:
        """A cell's aggregates written and the cell marked done."""
        writes.finish_cell(self.store, self.key, name, level, aggregates, seconds, images / seconds)

    def summary(self, name: str, level: float) -> pd.DataFrame:
        """A finished cell's aggregates, computed from its stored rows (paired with the clean road's)."""
        return self.summarise(self.rows(name, level), clean=None if name == CLEAN else self.rows(CLEAN, 0.0))

    def resummarise(self, cells: set[tuple[str, float]]) -> None:
        """Recomputes finished cells' aggregates from their stored rows (statistics newer than the run's)."""
        for i, (name, level) in enumerate(sorted(cells)):
            self.progress("recomputing statistics from stored rows", i, len(cells))
            writes.replace_aggregates(self.store, self.key, name, level, self.summary(name, level))


CellRunner = Callable[["Sweep", list[tuple[str, float]], Path, Progress], tuple[int, int]]
"""Runs a study's cells to do and lands them, returning (cells run, cells failed): `sweep_locally` here, or
`runner.ray_executor.on_ray(address)` on a Ray cluster (chosen by the caller, so this module never imports Ray)."""


class ExecutorError(RuntimeError):
    """The executor cannot run: the Ray cluster cannot be reached or started."""


def cells_to_run(config: StudyConfig, models: TrainedModels, done: set[tuple[str, float]]) -> list[tuple[str, float]]:
    """The cells not yet done, in running order: the clean road, untrained reconstructors, then trained ones,
    each reconstructor's levels mildest first."""
    levels = models.physics.axis.worst_first(config.physics.levels)[::-1]
    order = [CLEAN, *sorted(models.reconstructors, key=lambda n: isinstance(models.reconstructors[n], TrainableModel))]
    return [(name, float(lv)) for name in order for lv in ([0.0] if name == CLEAN else levels)
            if (name, float(lv)) not in done]


def sweep_locally(sweep: Sweep, todo: list[tuple[str, float]], checkpoint_dir: Path,
                  progress: Progress) -> tuple[int, int]:
    """Runs the cells here, one after the other, fitting each reconstructor before its first cell;
    returns (cells run, cells failed). A user model failing a cell fails only that cell (the clean road: the run)."""
    ran, failed, fitted = 0, 0, set()
    for name, level in todo:
        if name != CLEAN and name not in fitted:
            fit_reconstructor(sweep.models.reconstructors[name], sweep.models, checkpoint_dir, progress)
            fitted.add(name)
        try:
            sweep.run_cell(name, level)
        except UserModelError as exc:
            if name == CLEAN:  # no clean road, no baseline: the run cannot go on
                raise
            # the user's model broke its contract on this cell: nothing of it was stored; the others go on
            sweep.fail_cell(name, level, str(exc))
            failed += 1
            continue
        ran += 1
    return ran, failed


def prepare(config: StudyConfig) -> StudyConfig:
    """The config as it runs: its data checked (CohortError on bad data) and its content fingerprint set.

    A generated cohort is unchanged; a dataset on disk gets the fingerprint of its files, so its
    hash (the key of every stored row and of the trained weights) changes when the data does.
    """
    source = get_modality(config.modality).cohort_source(config)
    source.check()
    return with_model_hashes(replace(config, cohort=replace(config.cohort, fingerprint=source.fingerprint())))


def run_study(config: StudyConfig, store: Store, checkpoint_dir: Path, device: torch.device,
              progress: Progress = silent, cells: CellRunner | None = None) -> str:
    """Trains, sweeps, stores and finalises a study; returns its config hash. Finished cells are skipped.

    A run whose cells were all done before and whose finalisation completed is left as it is; a
    run stopped between its last cell and its finalisation is finalised on the next call. A run
    that fails is marked failed and its finished cells are still finalised (q-values and
    correlations over what is in), then finalised again when it is resumed.

    `cells` runs the cells: here one after the other (None: `sweep_locally`), or as Ray tasks with
    `ray_executor.on_ray(address)`, which fits the reconstructors there too; this process alone
    writes the store either way.
    """
    start = time.perf_counter()
    config = prepare(config)  # bad data is refused before the store holds anything of this run
    key = config.config_hash()
    modality = get_modality(config.modality)
    stored = queries.runs(store)
    stored = stored[stored.config_hash == key]
    previous = str(stored.status.iloc[0]) if len(stored) else None
    previous_message = stored.message.iloc[0] if len(stored) and isinstance(stored.message.iloc[0], str) else None
    was_done = previous == "done"
    writes.register_run(store, config, modality.describe(config))
    writes.write_model_cards(store, key, model_cards(config))
    sweep = None
    try:
        models = train_models(config, checkpoint_dir, device, progress, fit_reconstructors=False)
        writes.write_thresholds(store, key, models.thresholds)
        done = queries.done_cells(store, key)
        sweep = Sweep(store, config, models, device, checkpoint_dir.parent / "reconstructions", progress)
        version = stored.statistics.iloc[0] if len(stored) else None
        stale = bool(done) and not (pd.notna(version) and int(version) == STATISTICS_VERSION)
        if stale:  # summarised by older statistics: recomputed from the stored rows, cells not re-run
            sweep.resummarise(done)
        # stamped only once every stored aggregate is current: a run that fails while being re-summarised
        # stays stale (and is re-summarised next time); a new or current run is not flagged as outdated
        writes.set_statistics(store, key, STATISTICS_VERSION)
        todo = cells_to_run(config, models, done)
        ran, failed = (cells or sweep_locally)(sweep, todo, checkpoint_dir, progress)
        sweep.land()
        if ran or stale or not was_done:
            progress("finalising the run", 0, 1)
            finalise_run(store, config, modality, models.cohort.labels, models.thresholds, sweep.rows)
    except KeyboardInterrupt:
        writes.set_run_status(store, key, "interrupted", message="stopped by the user; run again to resume")
        raise
    except CheckpointError as exc:
        # damaged weights are no fault of the run: a stored run keeps its status and reason; a new one says why
        if previous:
            writes.set_run_status(store, key, previous, message=previous_message)
        else:
            writes.set_run_status(store, key, "failed", message=str(exc))
        raise
    except (CohortError, ThresholdError, UserModelError) as exc:
        if previous is None:  # bad data found while loading (an image that will not decode, a split too small)
            writes.forget_run(store, key)
        else:
            writes.set_run_status(store, key, "failed", message=f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        writes.set_run_status(store, key, "failed", message=f"{type(exc).__name__}: {exc}")
        if sweep is not None:
            # best effort: the cells that did finish keep their q-values and correlations; the error
            # that stopped the run is the one raised, whatever happens here
            with contextlib.suppress(Exception):
                sweep.salvage(wait=True)
            with contextlib.suppress(Exception):
                finalise_run(store, config, modality, sweep.models.cohort.labels, sweep.models.thresholds,
                             sweep.rows)
        raise
    finally:
        if sweep is not None:
            with contextlib.suppress(Exception):  # stopped another way (Ctrl-C, bad weights or data): keep what is done
                sweep.salvage(wait=False)
            sweep.close()
    if failed:
        writes.set_run_status(store, key, "incomplete", seconds=time.perf_counter() - start,
                              message=failure_message(queries.failed_cells(store, key)))
    else:
        writes.set_run_status(store, key, "done", seconds=time.perf_counter() - start)
    progress("done", 1, 1)
    return key


def failure_message(failed: pd.DataFrame, shown: int = 3) -> str:
    """What a run with failed cells says: how many, the first reasons, and what running it again does (a fixed
    model file has another SHA-256, hence another run; the same files retry the failed cells)."""
    reasons = "; ".join(f"{r.reconstructor} at {r.level:g}: {r.message}" for r in failed.head(shown).itertuples())
    more = f" (and {len(failed) - shown} more)" if len(failed) > shown else ""
    return (f"{len(failed)} cell(s) failed, the others are stored — {reasons}{more}. Running the study again "
            "with the same model files retries them; a fixed model file is a new run")
