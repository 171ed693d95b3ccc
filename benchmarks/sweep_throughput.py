"""Times the sweep's images/second per reconstructor against the bare work of its models on the same images.

"Sweep" is `evaluate_cell` as a study runs it: physics (each image's own noise draws), the
reconstructor, every diagnostic model's answer, image metrics and the moves between host and
device; each cell draws its own inputs (as a study's first reconstructor at a level does).
"Kept" is the same cell served the level's inputs drawn before (`runner.inputs.KeptInputs`), as
every later reconstructor at that level is in a study; the physics line says what drawing them
costs. "Bare" is the models alone on inputs already degraded and already on the device, under
no_grad: the reconstructor's own `reconstruct` (a network's forward plus data consistency, the
diffusion sampling loop over all its posterior samples, TV's CPU loop; 'none' and 'zero_filled'
hand back their input) followed by each diagnostic network's forward, at the same precision (the
config's `evaluation.precision`, or `--precision`). No physics, metrics, cache or bookkeeping.
sweep ÷ bare is the share of the models' own speed the sweep keeps (1 = the sweep costs nothing
beyond its models). Both are warmed up on the first batch, then timed on the same batches in one
run, CUDA synchronised before each clock reading; the device line names the card (or CPU) the
figures come from. Weights are untrained: speed does not depend on them.

    python -m benchmarks.sweep_throughput [--config configs/demo.yaml] [--images 256] [--device auto]
        [--image-size N] [--precision float32|bf16]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import clock, device_name, first, sweep_bench
from recon_core.device import network_precision
from recon_core.diagnostics.task import TaskModel
from recon_core.physics.base import Acquisition
from recon_core.reconstructors import Reconstructor, build_reconstructor
from recon_core.runner.evaluate import evaluate_cell
from recon_core.runner.inputs import KeptInputs, input_batches

Inputs = list[tuple[torch.Tensor, torch.Tensor, list[str]]]
"""Degraded images, their measurements and image ids, batch by batch, on the device."""


def _bare(recon: Reconstructor, task_models: list[TaskModel], physics: Acquisition, level: float,
          inputs: Inputs, precision: str) -> None:
    """The models' own work on degraded inputs: the reconstructor, then each diagnostic network's forward (on the
    reconstruction and, for a sampler, on each of its posterior samples, as a sweep judges them)."""
    with torch.no_grad(), network_precision(recon.device, precision):
        for degraded, measurement, ids in inputs:
            samples = recon.reconstruct_samples(degraded, physics, level, measurement, ids)
            for output in [samples.mean(0), *(samples if len(samples) > 1 else [])]:
                for model in task_models:
                    model.net(output)


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    """Prints and returns (reconstructor, sweep, bare, kept-inputs sweep images/s) for each reconstructor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=256, help="test images timed per reconstructor")
    parser.add_argument("--image-size", type=int, help="default: the config's")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", choices=["float32", "bf16"], help="the networks' (default: the config's)")
    args = parser.parse_args(argv)
    bench = sweep_bench(args.config, args.images, args.image_size, args.device)
    config, device, test, physics, task_models, level = (bench.config, bench.device, bench.test, bench.physics,
                                                         bench.task_models, bench.level)
    batch, precision = config.evaluation.batch_size, args.precision or config.evaluation.precision
    # a sampler's samples are called at operating thresholds; the timed models are untrained, any threshold times
    thresholds = {label: 0.5 for model in task_models for label in model.labels}
    inputs: Inputs = [(b.degraded, b.measurement, b.ids) for b in input_batches(test, physics, level, batch, device)]
    print(f"{config.name} on {device_name(device)}: {len(test)} test images at {config.cohort.image_size} px, "
          f"batch {batch}, level {level:g} {physics.level_unit}, {precision}")
    kept = KeptInputs(test)
    start = clock(device)
    for _ in input_batches(test, physics, level, batch, device, kept=kept):
        pass
    print(f"physics: {len(test) / (clock(device) - start):.1f} img/s (drawn once per level in a study)")
    print(f"{'reconstructor':<14}{'sweep img/s':>12}{'kept img/s':>12}{'bare img/s':>12}{'sweep / bare':>14}"
          f"{'kept / bare':>13}")
    out = []
    for name in config.reconstructors.names:
        recon = build_reconstructor(name, config, device)
        evaluate_cell(first(test, batch), task_models, physics, recon, level, device, batch, [],
                      precision=precision, thresholds=thresholds)  # warm-up
        start = clock(device)
        evaluate_cell(test, task_models, physics, recon, level, device, batch, [], precision=precision,
                      thresholds=thresholds)
        sweep_rate = len(test) / (clock(device) - start)
        start = clock(device)
        evaluate_cell(test, task_models, physics, recon, level, device, batch, [], precision=precision, kept=kept,
                      thresholds=thresholds)
        kept_rate = len(test) / (clock(device) - start)
        _bare(recon, task_models, physics, level, inputs[:1], precision)  # warm-up
        start = clock(device)
        _bare(recon, task_models, physics, level, inputs, precision)
        bare_rate = len(test) / (clock(device) - start)
        print(f"{name:<14}{sweep_rate:>12.1f}{kept_rate:>12.1f}{bare_rate:>12.1f}{sweep_rate / bare_rate:>14.2f}"
              f"{kept_rate / bare_rate:>13.2f}")
        out.append((name, sweep_rate, bare_rate, kept_rate))
    return out


if __name__ == "__main__":
    main()
