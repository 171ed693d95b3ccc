"""Cohort generation before and after the exact fast zoom and the worker processes: speed and equality, one run.

The old generators are read from a git revision (default: the commit before the change) and run
in this process, one subject after another; the new ones run with the default worker count
(the CPUs available, or $TANDEM_COHORT_WORKERS). Every pair must give identical bytes.

    python -m benchmarks.cohort_generation [--xray 2000] [--mri 200] [--mri-gpu 60] [--old-rev 2856924]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon_core.cohorts import synthetic_mri, synthetic_xray
from recon_core.cohorts.base import Cohort
from recon_core.cohorts.workers import cohort_workers
from recon_core.config import CohortConfig

ROOT = Path(__file__).resolve().parent.parent


def old_module(rev: str, path: str) -> types.ModuleType:
    """A cohort module as it was at git revision `rev`, imported under a private name."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType(f"old_{Path(path).stem}")
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)  # the project's own history, from git
    return module


def timed(make: Callable[[], Cohort]) -> tuple[Cohort, float]:
    """(the cohort, seconds to make it)."""
    start = time.perf_counter()
    cohort = make()
    return cohort, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[tuple[str, int, float, float, bool]]:
    """Prints old and new seconds per cohort, the speed-up and whether the bytes are identical."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xray", type=int, default=2000, help="X-ray subjects at 256 px and at 128 px")
    parser.add_argument("--mri", type=int, default=200, help="MRI patients at the demo size (128 px, 8 slices)")
    parser.add_argument("--mri-gpu", type=int, default=60, help="MRI patients at the GPU size (256 px, 16 slices)")
    parser.add_argument("--old-rev", default="2856924")
    args = parser.parse_args(argv)
    old_xray = old_module(args.old_rev, "recon_core/cohorts/synthetic_xray.py")
    old_mri = old_module(args.old_rev, "recon_core/cohorts/synthetic_mri.py")
    mri = dict(anatomy="mni152", split_fractions=(0.3, 0.3, 0.15, 0.25), prevalence={"high_grade": 0.5},
               age_band_edges=(58.0,))
    cases = [
        ("X-ray 256 px", old_xray, synthetic_xray, CohortConfig(anatomy="radiograph", n_subjects=args.xray,
                                                                image_size=256)),
        ("X-ray 128 px", old_xray, synthetic_xray, CohortConfig(anatomy="radiograph", n_subjects=args.xray,
                                                                image_size=128, age_band_edges=(60.0,),
                                                                split_fractions=(0.3, 0.4, 0.1, 0.2))),
        ("MRI 128 px × 8", old_mri, synthetic_mri, CohortConfig(n_subjects=args.mri, slices_per_subject=8,
                                                                image_size=128, **mri)),
        ("MRI 256 px × 16", old_mri, synthetic_mri, CohortConfig(n_subjects=args.mri_gpu, slices_per_subject=16,
                                                                 image_size=256, **mri)),
    ]
    print(f"workers: {cohort_workers()}")
    rows = []
    for name, old, new, config in cases:
        # templates built before timing
        new.generate_cohort(dataclasses.replace(config, n_subjects=min(20, config.n_subjects)), 0)
        before, old_seconds = timed(lambda old=old, config=config: old.generate_cohort(config, 0))
        after, new_seconds = timed(lambda new=new, config=config: new.generate_cohort(config, 0))
        # the old subject table's columns unchanged (newer code may add columns, e.g. the known lesion sites)
        same = (before.images.tobytes() == after.images.tobytes()
                and after.subjects[before.subjects.columns].equals(before.subjects)
                and (before.masks is None or np.array_equal(before.masks, after.masks)))
        print(f"{name:16s} {len(after.images):6d} images  old {old_seconds:6.1f} s  new {new_seconds:6.1f} s  "
              f"×{old_seconds / new_seconds:4.1f}  identical: {same}")
        rows.append((name, len(after.images), old_seconds, new_seconds, same))
    return rows


if __name__ == "__main__":
    main()
