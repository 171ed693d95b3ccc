"""Cell tasks that fail on purpose, for the Ray executor's tests: each attempt leaves a mark in the cache folder
(Ray workers are other processes, so the count lives on disk), and tv at level 300 fails once or always."""

from __future__ import annotations

from pathlib import Path

from recon_core.config import StudyConfig
from recon_core.runner.evaluate import CellResult
from recon_core.runner.ray_executor import CellFailure, cell_task


def attempts(checkpoint_dir: Path, name: str, level: float) -> int:
    """How many times a cell's task has started."""
    log = checkpoint_dir.parent / f"attempts-{name}-{level:g}"
    return len(log.read_text()) if log.exists() else 0


def _attempt(checkpoint_dir: Path, name: str, level: float) -> int:
    """Marks one more start of a cell's task; returns how many there have been."""
    with (checkpoint_dir.parent / f"attempts-{name}-{level:g}").open("a") as log:
        log.write("x")
    return attempts(checkpoint_dir, name, level)


def failing_once(config: StudyConfig, checkpoint_dir: Path, device: str, name: str, level: float,
                 fitted: str | None) -> CellResult | CellFailure:
    """The cell task, except that tv at 300's first attempt raises (a worker's passing trouble)."""
    if _attempt(checkpoint_dir, name, level) == 1 and (name, level) == ("tv", 300.0):
        raise RuntimeError("worker hiccup (simulated)")
    return cell_task(config, checkpoint_dir, device, name, level, fitted)


def failing_always(config: StudyConfig, checkpoint_dir: Path, device: str, name: str, level: float,
                   fitted: str | None) -> CellResult | CellFailure:
    """The cell task, except that tv at 300 always raises (broken for good)."""
    _attempt(checkpoint_dir, name, level)
    if (name, level) == ("tv", 300.0):
        raise RuntimeError("broken for good (simulated)")
    return cell_task(config, checkpoint_dir, device, name, level, fitted)
