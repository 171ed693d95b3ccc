"""Writer wait: how long a sweep's writes wait while dashboard-like readers read the store directly or via snapshots.

Copies the store to a temporary folder (the original is never touched), starts reader processes
that each do "page runs" of 8 reads as fast as they can, and times the writer's connection waits
for a series of small writes, first beside direct readers, then beside snapshot readers.

    python -m benchmarks.writer_wait --store data/cache/tandem.duckdb [--readers 3] [--writes 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from recon_core.store import Store
from recon_core.store.snapshot import snapshot

READS_PER_PAGE = 8
"""Reads of one dashboard page run (runs, run view, cells, thresholds, aggregates, examples, …)."""


def read_pages(path: str, through_snapshots: bool, seconds: float) -> None:
    """A busy dashboard session in its own process: page runs of `READS_PER_PAGE` reads for `seconds`."""
    live = Store(path, timeout=120)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        target = snapshot(live, Path(path).parent / "snapshots") if through_snapshots else live
        for _ in range(READS_PER_PAGE):
            target.query("SELECT count(*) FROM meta")


def writer_waits(path: Path, through_snapshots: bool, readers: int, writes: int, pause: float) -> list[float]:
    """Seconds each write waited for its connection while `readers` processes read."""
    live = Store(path, timeout=120)
    seconds = 2 + writes * (pause + 0.1) + 2
    procs = [multiprocessing.get_context("spawn").Process(target=read_pages, args=(str(path), through_snapshots,
                                                                                   seconds))
             for _ in range(readers)]
    for proc in procs:
        proc.start()
    time.sleep(2)  # the readers are up and busy
    waits = []
    for i in range(writes):
        start = time.perf_counter()
        with live.connect() as con:
            waits.append(time.perf_counter() - start)
            con.execute("INSERT INTO meta VALUES (?, 'benchmark') ON CONFLICT DO NOTHING",
                        [f"writer-wait-{through_snapshots}-{i}-{time.time_ns()}"])
        time.sleep(pause)
    for proc in procs:
        proc.join()
    return waits


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    """Prints and returns (readers' kind, median ms, max ms, total s) per round and kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between writes (a sweep's cells)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tandem.duckdb"
        shutil.copyfile(args.store, path)
        for _ in range(args.rounds):
            for kind, through in (("direct readers", False), ("snapshot readers", True)):
                waits = writer_waits(path, through, args.readers, args.writes, args.pause)
                rows.append((kind, statistics.median(waits) * 1000, max(waits) * 1000, sum(waits)))
    print(f"{'beside':<18}{'median ms':>10}{'max ms':>9}{'total s':>9}"
          f"   ({args.writes} writes, {args.readers} readers)")
    for kind, median, worst, total in rows:
        print(f"{kind:<18}{median:>10.0f}{worst:>9.0f}{total:>9.2f}")
    return rows


if __name__ == "__main__":
    main()
