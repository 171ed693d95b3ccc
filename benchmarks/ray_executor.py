"""Cells/s of the study grid through the Ray executor with 1 and 2 workers, and against the local executor.

A study sized so cells dominate (untrained reconstructors only — none and tv — over several
levels, the task model's weights trained once beforehand and shared): each route runs the whole
`run_study` into a fresh store and a fresh reconstruction cache, so every cell is evaluated. The
Ray routes start a local Ray of 1 or 2 CPUs (one task per CPU); its start is timed apart.

    python -m benchmarks.ray_executor [--config configs/tiny.yaml] [--subjects 600] [--image-size 32]
        [--levels 3000 1000 300 100] [--reconstructors none tv]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import ray
import torch

from recon_core.config import StudyConfig
from recon_core.config_loader import load_config, validate
from recon_core.runner import run_study
from recon_core.runner.ray_executor import on_ray
from recon_core.store import Store, queries


def study(config: StudyConfig, subjects: int, image_size: int, levels: list[float], names: list[str]) -> StudyConfig:
    """The config with `subjects` generated subjects of `image_size` px, the given levels and reconstructors."""
    return validate(dataclasses.replace(
        config, cohort=dataclasses.replace(config.cohort, n_subjects=subjects, image_size=image_size),
        physics=dataclasses.replace(config.physics, levels=tuple(levels)),
        reconstructors=dataclasses.replace(config.reconstructors, names=tuple(names))))


def timed_run(config: StudyConfig, weights: Path, folder: Path, executor: str) -> tuple[float, int]:
    """(seconds, cells) of one whole study into a fresh store and cache holding only the trained weights."""
    shutil.copytree(weights, folder / "checkpoints")
    store = Store(folder / "tandem.duckdb")
    start = time.perf_counter()
    cells = on_ray() if executor == "ray" else None
    key = run_study(config, store, folder / "checkpoints", torch.device("cpu"), cells=cells)
    seconds = time.perf_counter() - start
    return seconds, len(queries.done_cells(store, key))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Prints and returns cells/s of the local executor and of Ray with 1 and 2 workers, and Ray's start seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--subjects", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--levels", type=float, nargs="+", default=[3000, 1000, 300, 100])
    parser.add_argument("--reconstructors", nargs="+", default=["none", "tv"])
    args = parser.parse_args(argv)
    config = study(load_config(args.config), args.subjects, args.image_size, args.levels, args.reconstructors)
    torch.set_num_threads(1)  # the local executor on one core, as each Ray worker is
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_study(config, Store(root / "warm" / "tandem.duckdb"), root / "warm" / "checkpoints", torch.device("cpu"))
        weights = root / "warm" / "checkpoints"  # the task model trained once, untimed
        seconds, cells = timed_run(config, weights, root / "local", "local")
        rates["local"] = cells / seconds
        for workers in (1, 2):
            start = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            rates[f"ray start ({workers}) s"] = time.perf_counter() - start
            try:
                seconds, cells = timed_run(config, weights, root / f"ray{workers}", "ray")
            finally:
                ray.shutdown()
            rates[f"ray {workers} worker(s)"] = cells / seconds
    print(f"{cells} cells, {config.cohort.n_subjects} subjects at {config.cohort.image_size} px, "
          f"levels {list(config.physics.levels)}")
    for name, value in rates.items():
        print(f"{name:>18}: {value:.3f}" + ("" if name.endswith(" s") else " cells/s"))
    print(f"Ray (1 worker) / local: {rates['ray 1 worker(s)'] / rates['local']:.2f}×; "
          f"2 workers / 1 worker: {rates['ray 2 worker(s)'] / rates['ray 1 worker(s)']:.2f}×")
    return rates


if __name__ == "__main__":
    main()
