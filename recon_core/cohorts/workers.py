"""Renders a generated cohort's subjects in chunks, over worker processes when the machine has several CPUs.

Each subject's image comes from its own seeded generator (`recon_core.seeding`), so a subject
renders the same whichever chunk or process draws it: the cohort is identical for every worker
count (`tests/test_cohort_generation.py` pins it).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

import pandas as pd

from recon_core.progress import Progress

T = TypeVar("T")
WORKERS_ENV = "TANDEM_COHORT_WORKERS"
"""Overrides the worker count (1: render in this process)."""
CHUNKS_PER_WORKER = 4
"""Chunks each worker gets on average: small enough to balance load, large enough to amortise a hand-off."""


def cohort_workers() -> int:
    """Processes to render with: $TANDEM_COHORT_WORKERS, else the CPUs this process may run on."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"${WORKERS_ENV} must be a whole number of processes ≥ 1, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _holds_cuda() -> bool:
    """Whether this process has a CUDA context, which a fork must not copy (then chunks render here, one by one).

    Asked without importing torch: only a process that loaded it can hold a context.
    """
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


def render_chunks(render: Callable[[pd.DataFrame], T], table: pd.DataFrame, workers: int | None, most: int,
                  progress: Progress, stage: str) -> Iterator[T]:
    """render(rows) for consecutive chunks of at most `most` rows, in order, over `workers` processes if several.

    `render` must be picklable (a module-level function or a partial of one). Workers are forked:
    they inherit the imported modules and the cached anatomy templates instead of re-importing
    torch and re-reading the templates (seconds each), and run only NumPy/SciPy code.
    """
    workers = cohort_workers() if workers is None else max(1, workers)
    total = len(table)
    chunk = max(1, min(most, -(-total // (workers * CHUNKS_PER_WORKER))))
    chunks = [table.iloc[start:start + chunk] for start in range(0, total, chunk)]
    parallel = (workers > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods()
                and not _holds_cuda())
    pool = (ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("fork"))
            if parallel else nullcontext())
    done = 0
    with pool:
        for rows, result in zip(chunks, (pool.map if parallel else map)(render, chunks), strict=True):
            done += len(rows)
            progress(stage, done, total)
            yield result
