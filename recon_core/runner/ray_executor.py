"""The study grid on a Ray cluster: reconstructors are fit and cells evaluated as Ray tasks; this process lands them.

The only module that imports Ray (and only when `--executor ray` asks for it). Workers read the
cohort and the checkpoints from paths every node shares and return a cell's per-image rows; the
driver alone writes the store (DuckDB has one writer), lands each cell as it arrives — the clean
road first, cells arriving before it are held — and the run is finalised by `run_study` as locally.
A cell waits for its reconstructor's fit because the fit task's ObjectRef is its argument.
"""

from __future__ import annotations

import socket
from pathlib import Path

import ray
import threadpoolctl
import torch
from ray.exceptions import RayError, RayTaskError

from recon_core.config import StudyConfig
from recon_core.models.user_models import UserModelError
from recon_core.progress import Progress, silent
from recon_core.runner.evaluate import CellResult
from recon_core.runner.study import CellEvaluator, CellRunner, ExecutorError, Sweep, fit_reconstructor, train_models
from recon_core.store import CLEAN

RETRIES = 2
"""How many times a failed task (an exception or a lost worker) is run again before its cell is marked failed."""


class CellFailure(Exception):
    """Why a cell failed for good: a user's model breaking its contract on a worker (returned, not raised, so Ray
    does not retry it), or a task that still failed after its retries."""


_WORKER: dict[tuple[str, str, str], CellEvaluator] = {}
"""Each worker's loaded cohort and models, per (config hash, checkpoint folder, device): built once, reused."""


def worker_evaluator(config: StudyConfig, checkpoint_dir: Path, device: str) -> CellEvaluator:
    """This worker's evaluator for the run: cohort, task models (loaded from the shared checkpoints) built once."""
    key = (config.config_hash(), str(checkpoint_dir), device)
    if key not in _WORKER:
        threadpoolctl.threadpool_limits(1)  # a task per core: one BLAS and torch thread each
        torch.set_num_threads(1)
        models = train_models(config, checkpoint_dir, torch.device(device), silent, fit_reconstructors=False)
        _WORKER[key] = CellEvaluator(config, models, torch.device(device), checkpoint_dir.parent / "reconstructions",
                                     silent)
    return _WORKER[key]


def fit_task(config: StudyConfig, checkpoint_dir: Path, device: str, name: str, after: str | None = None) -> str:
    """Fits (or loads) one reconstructor into the shared checkpoint folder; its name is what cells wait on.

    `after` is the fit this one waits for (a mitigation variant's base, which it starts from): Ray
    resolves it before the task runs, so a base is trained once, never by several variants at once.
    """
    evaluator = worker_evaluator(config, checkpoint_dir, device)
    fit_reconstructor(evaluator.models.reconstructors[name], evaluator.models, checkpoint_dir, silent)
    return name


def cell_task(config: StudyConfig, checkpoint_dir: Path, device: str, name: str, level: float,
              fitted: str | None) -> CellResult | CellFailure:
    """One cell evaluated on a worker (after its reconstructor's fit, `fitted`): its rows, or the user's model's
    contract failure."""
    evaluator = worker_evaluator(config, checkpoint_dir, device)
    try:
        if fitted is not None:  # loads the weights the fit task saved (a no-op for an untrained reconstructor)
            fit_reconstructor(evaluator.models.reconstructors[name], evaluator.models, checkpoint_dir, silent)
        return evaluator(name, level)
    except UserModelError as exc:
        return CellFailure(str(exc))


def check_reachable(address: str | None) -> None:
    """An ExecutorError unless the cluster at `address` answers (None or 'auto': nothing to check); said before
    anything is trained, since Ray itself waits minutes for a GCS that is not there."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def connect(address: str | None) -> bool:
    """Joins the Ray cluster at `address` (None: starts a local one) unless already joined; True if joined here."""
    if ray.is_initialized():
        return False
    check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ExecutorError(f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {exc}") from exc
    return True


def failure(exc: RayError) -> str:
    """What a task that failed for good says: its own exception's type and message, or Ray's."""
    cause = exc.cause if isinstance(exc, RayTaskError) else None
    return f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(exc).__name__}: {exc}"


def task_options(device: str) -> dict[str, object]:
    """A task's declared needs and retries: one CPU, and one GPU when the run's device is CUDA."""
    return dict(num_cpus=1, num_gpus=1 if device == "cuda" else 0, max_retries=RETRIES, retry_exceptions=True)


def fit_tasks(config: StudyConfig, checkpoint_dir: Path, device: str, names: list[str]) -> dict[str, ray.ObjectRef]:
    """One fit task per reconstructor named (each once), started now; their refs are what cells wait on."""
    fit = ray.remote(fit_task).options(**task_options(device))
    refs: dict[str, ray.ObjectRef] = {}
    for name in sorted(dict.fromkeys(names), key=lambda n: config.reconstructors.variant(n) is not None):
        variant = config.reconstructors.variant(name)
        base = None if variant is None else variant[0]
        if base is not None and base not in refs:  # its base not named here: fitted first all the same
            refs[base] = fit.remote(config, checkpoint_dir, device, base)
        refs[name] = fit.remote(config, checkpoint_dir, device, name, refs.get(base) if base else None)
    return {name: refs[name] for name in dict.fromkeys(names)}


def fit_on_ray(config: StudyConfig, checkpoint_dir: Path, device: torch.device, address: str | None,
               progress: Progress) -> None:
    """`train --executor ray`: every reconstructor fit (or loaded) as a Ray task into the shared checkpoints."""
    joined = connect(address)
    try:
        names = {ref: name for name, ref in fit_tasks(config, checkpoint_dir, device.type,
                                                       list(config.reconstructors.names)).items()}
        pending, total = list(names), len(names)
        progress("fitting reconstructors on the Ray cluster", 0, total)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ready)
            except RayError as exc:  # retried RETRIES times already: said in one line, naming the model
                raise ExecutorError(f"fitting {names[ready[0]]!r} failed on the Ray cluster after {RETRIES} "
                                    f"retries: {failure(exc)}") from exc
            progress("fitting reconstructors on the Ray cluster", total - len(pending), total)
    finally:
        if joined:
            ray.shutdown()


def sweep_on_ray(sweep: Sweep, todo: list[tuple[str, float]], checkpoint_dir: Path, address: str | None,
                 progress: Progress) -> tuple[int, int]:
    """Runs the cells as Ray tasks and lands each as it arrives; returns (cells run, cells failed).

    A task is retried `RETRIES` times (exceptions and lost workers); one that still fails marks its
    cell failed with its error and the others go on — but without the clean road there is no
    baseline, so its failure stops the run, as locally. Every task asks for one GPU when the run's
    device is CUDA (Ray pins it through CUDA_VISIBLE_DEVICES), none otherwise.
    """
    joined = connect(address)
    try:
        device = sweep.device.type  # a worker's one visible GPU is its "cuda"
        fits = fit_tasks(sweep.config, checkpoint_dir, device, [n for n, _ in todo if n != CLEAN])
        cell = ray.remote(cell_task).options(**task_options(device))
        pending = {cell.remote(sweep.config, checkpoint_dir, device, name, level, fits.get(name)): (name, level)
                   for name, level in todo}
        arrived: list[tuple[str, float, CellResult]] = []
        ran, failed = 0, 0
        progress("cells on the Ray cluster", 0, len(todo))
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            name, level = pending.pop(ref)
            try:
                result = ray.get(ref)
            except RayError as exc:
                if name == CLEAN:
                    raise RuntimeError(f"the clean road failed on the Ray cluster: {failure(exc)}") from exc
                result = CellFailure(failure(exc))
            if isinstance(result, CellFailure):
                if name == CLEAN:  # no clean road, no baseline: the run cannot go on
                    raise UserModelError(str(result))
                sweep.fail_cell(name, level, str(result))
                failed += 1
            else:
                arrived.append((name, level, result))
            if all(n != CLEAN for n, _ in pending.values()):  # aggregates pair with the clean road's rows: it first
                for cell_name, cell_level, cell_result in sorted(arrived, key=lambda c: c[0] != CLEAN):
                    sweep.land_cell(cell_name, cell_level, cell_result)
                    ran += 1
                arrived = []
            progress("cells on the Ray cluster", ran + failed, len(todo))
        return ran, failed
    finally:
        if joined:
            ray.shutdown()


def on_ray(address: str | None = None) -> CellRunner:
    """`run_study(cells=on_ray(address))`: the study's cells as Ray tasks on the cluster at `address` (None: a
    local Ray started and stopped with the run)."""
    return lambda sweep, todo, checkpoint_dir, progress: sweep_on_ray(sweep, todo, checkpoint_dir, address, progress)
