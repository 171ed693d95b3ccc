"""Times a whole study end to end, stage by stage, with the GPU's utilisation in each stage.

A stage is what the progress callback names (loading the cohort, training each model, each
sweep cell with its statistics, finalising). On CUDA a sampler thread reads the device's
utilisation (`torch.cuda.utilization`, NVML) every 100 ms and attributes each reading to the
stage running then, so the table says where the GPU idles. Builds into a fresh folder:

    python -m benchmarks.study_stages --config configs/demo.yaml [--device auto] [--cache /tmp/stages]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.common import device_name
from recon_core.config_loader import load_config
from recon_core.device import pick_device
from recon_core.runner import run_study
from recon_core.store import Store


@dataclass
class Stage:
    """One stage's wall time and the GPU utilisation readings taken while it ran."""

    name: str
    seconds: float = 0.0
    readings: list[float] = field(default_factory=list)


class StageClock:
    """A progress callback that times stages (a new stage name starts a new stage) and samples the GPU."""

    def __init__(self, device: torch.device) -> None:
        self.stages: list[Stage] = [Stage("start (before the first progress report)")]
        self.started = self.last = time.perf_counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sampler = None
        if device.type == "cuda":
            self.sampler = threading.Thread(target=self._sample, args=(device,), daemon=True)
            self.sampler.start()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        with self.lock:
            self.stages[-1].seconds += now - self.last
            self.last = now
            if self.stages[-1].name != stage:
                self.stages.append(Stage(stage))

    def _sample(self, device: torch.device) -> None:
        """Every 100 ms: the device's utilisation (%), credited to the stage running now."""
        while not self.stop.wait(0.1):
            try:
                reading = float(torch.cuda.utilization(device))
            except Exception:  # no NVML (pynvml missing): no utilisation column
                return
            with self.lock:
                self.stages[-1].readings.append(reading)

    def close(self) -> float:
        """Stops sampling; the total wall time."""
        self("end", 1, 1)
        self.stop.set()
        if self.sampler is not None:
            self.sampler.join()
        return time.perf_counter() - self.started


def table(stages: list[Stage], total: float) -> str:
    """Stages merged by kind (training <model>, <reconstructor> cells, …): seconds, share and mean GPU use."""
    merged: dict[str, Stage] = {}
    for stage in stages:
        if stage.name == "end":
            continue
        kind = stage.name.split(" at ")[0] + (" cells" if " at " in stage.name else "")
        entry = merged.setdefault(kind, Stage(kind))
        entry.seconds += stage.seconds
        entry.readings += stage.readings
    lines = [f"{'stage':<44}{'seconds':>9}{'share':>8}{'GPU busy':>10}"]
    for entry in merged.values():
        busy = f"{sum(entry.readings) / len(entry.readings):.0f} %" if entry.readings else "—"
        lines.append(f"{entry.name[:43]:<44}{entry.seconds:>9.1f}{entry.seconds / total:>8.0%}{busy:>10}")
    readings = [r for s in stages for r in s.readings]
    overall = f"{sum(readings) / len(readings):.0f} %" if readings else "—"
    lines.append(f"{'total':<44}{total:>9.1f}{'':>8}{overall:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> tuple[list[Stage], float]:
    """Builds the config's study in a fresh folder, prints the stage table; returns (stages, total seconds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", help="folder for the store and checkpoints (default: a temporary one)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    print(f"{args.config} on {device_name(device)}")
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(args.cache or scratch)
        clock = StageClock(device)
        run_study(load_config(args.config), Store(cache / "tandem.duckdb"), cache / "checkpoints", device, clock)
        total = clock.close()
    print(table(clock.stages, total))
    return clock.stages, total


if __name__ == "__main__":
    main()
