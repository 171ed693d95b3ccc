"""Times the sweep's images/second per reconstructor against the bare forward passes of its models.

The sweep does more than the models: physics (Poisson draws per image), image metrics, moving
tensors, and the classical denoiser's CPU loop. Both numbers come from the same batches in one
run, so their ratio says where time goes. "Bare" is each reconstructor's own `reconstruct` on
already degraded batches (a network's forward, diffusion's sampling loop, TV's CPU loop) plus
the forward passes of the diagnostic models. Weights are untrained: speed does not depend on them.

    python -m benchmarks.sweep_throughput [--config configs/demo.yaml] [--images 256] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from recon_core.config_loader import load_config
from recon_core.device import pick_device
from recon_core.modalities import get_modality
from recon_core.reconstructors import build_reconstructor
from recon_core.runner.evaluate import evaluate_cell
from recon_core.runner.study import split_data


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    """Prints and returns (reconstructor, sweep images/s, bare images/s) for each reconstructor of the config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    modality = get_modality(config.modality)
    per_subject = config.cohort.slices_per_subject if modality.unit == "patient" else 1
    subjects = -(-args.images * 5 // per_subject)  # the test split is a fifth of the subjects
    config = dataclasses.replace(config, cohort=dataclasses.replace(config.cohort, n_subjects=subjects))
    device = pick_device(args.device)
    cohort = modality.cohort_source(config).load()
    test = split_data(cohort, "test")
    take = slice(0, min(args.images, len(test)))
    test = dataclasses.replace(test, rows=test.rows.iloc[take], images=test.images[take],
                               masks=None if test.masks is None else test.masks[take])
    physics = modality.build_physics(config)
    task_models = modality.task_models(config, cohort.labels, device)
    for model in task_models:
        model.net.eval()
    batch = config.evaluation.batch_size
    level = float(sorted(config.physics.levels)[len(config.physics.levels) // 2])
    ids = test.rows.image_id.tolist()
    print(f"device {device}, {len(test)} test images at {config.cohort.image_size} px, batch {batch}, "
          f"level {level:g}, torch threads {torch.get_num_threads()}")
    print(f"{'reconstructor':<14}{'sweep img/s':>12}{'bare models img/s':>19}{'sweep / bare':>14}")
    out = []
    for name in config.reconstructors.names:
        recon = build_reconstructor(name, config, device)
        warm = dataclasses.replace(test, rows=test.rows.iloc[:batch], images=test.images[:batch],
                                   masks=None if test.masks is None else test.masks[:batch])
        evaluate_cell(warm, task_models, physics, recon, level, device, batch, [])  # warm-up
        start = time.perf_counter()
        evaluate_cell(test, task_models, physics, recon, level, device, batch, [])
        sweep_rate = len(test) / (time.perf_counter() - start)
        # The same batches, degraded beforehand: only the reconstructor and the diagnostic networks run.
        batches = []
        for i in range(0, len(test), batch):
            measurement = physics.measure(torch.from_numpy(test.images[i:i + batch][:, None]).to(device), level,
                                          ids[i:i + batch])
            batches.append((physics.to_image(measurement, level), measurement, ids[i:i + batch]))
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            for degraded, measurement, batch_ids in batches:
                output = recon.reconstruct(degraded, physics, level, measurement, batch_ids)
                for model in task_models:
                    model.net(output.to(device))
        _sync(device)
        bare_rate = len(test) / (time.perf_counter() - start)
        print(f"{name:<14}{sweep_rate:>12.1f}{bare_rate:>19.1f}{sweep_rate / bare_rate:>14.2f}")
        out.append((name, sweep_rate, bare_rate))
    return out


if __name__ == "__main__":
    main()
