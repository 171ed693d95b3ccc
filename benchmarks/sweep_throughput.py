"""Times the sweep's images/second per reconstructor against the bare forward passes of its models.

The sweep does more than the models: physics (Poisson draws per image), image metrics, moving
tensors, and the classical denoiser's CPU loop. Both numbers come from the same batches in one
run, so their ratio says where time goes. Weights are untrained: speed does not depend on them.

    python -m benchmarks.sweep_throughput [--config configs/demo.yaml] [--images 256] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from recon_core.cohorts.synthetic_xray import generate_cohort
from recon_core.config import load_config
from recon_core.device import pick_device
from recon_core.diagnostics import Classifier
from recon_core.physics import build_physics
from recon_core.reconstructors import build_reconstructor
from recon_core.runner.evaluate import evaluate_cell


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    config = load_config(args.config)
    config = dataclasses.replace(config, cohort=dataclasses.replace(config.cohort, n_subjects=args.images * 5))
    device = pick_device(args.device)
    cohort = generate_cohort(config.cohort, config.seed)
    rows, images = cohort.split("test")
    rows, images = rows.iloc[:args.images], images[:args.images]
    physics = build_physics(config)
    classifier = Classifier(config, cohort.labels, device)
    classifier.net.eval()
    batch = config.evaluation.batch_size
    level = float(sorted(config.physics.levels)[len(config.physics.levels) // 2])
    print(f"device {device}, {len(rows)} test images at {config.cohort.image_size} px, batch {batch}, "
          f"level {level:g}, torch threads {torch.get_num_threads()}")
    print(f"{'reconstructor':<14}{'sweep img/s':>12}{'bare models img/s':>19}{'sweep / bare':>14}")
    for name in config.reconstructors.names:
        recon = build_reconstructor(name, config, device)
        if hasattr(recon, "net"):
            recon.net.eval()
        evaluate_cell(rows.iloc[:batch], images[:batch], cohort.labels, classifier, physics, recon, level,
                      device, batch, [], config.modality)  # warm-up
        start = time.perf_counter()
        evaluate_cell(rows, images, cohort.labels, classifier, physics, recon, level, device, batch, [],
                      config.modality)
        sweep_rate = len(rows) / (time.perf_counter() - start)
        # Bare forward passes on the same batches: reconstructor network (if any) + classifier.
        degraded = [physics.degrade(torch.from_numpy(images[i:i + batch][:, None]).to(device), level,
                                    rows.image_id.iloc[i:i + batch].tolist()) for i in range(0, len(rows), batch)]
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            for x in degraded:
                y = recon.net(x) if hasattr(recon, "net") else x
                classifier.net(y)
        _sync(device)
        bare_rate = len(rows) / (time.perf_counter() - start)
        print(f"{name:<14}{sweep_rate:>12.1f}{bare_rate:>19.1f}{sweep_rate / bare_rate:>14.2f}")


if __name__ == "__main__":
    main()
