"""Diffusion sampling steps against time, image quality and the task: the measured basis of the default.

Samples the same test images of a trained study with 10, 25, 50 and the full number of DDIM
steps (the training schedule's length) and prints, per step count, seconds per image, PSNR,
SSIM and the task: the share of (image, finding) decisions at the study's fixed thresholds
that agree with the decisions on the clean image, and, where the modality segments, the
segmenter's mean Dice. Needs the study's checkpoints (run its sweep first).

    python -m benchmarks.diffusion_steps --config configs/demo.yaml [--images 32] [--level 300]
        [--steps 10 25 50 1000] [--cache data/cache]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from recon_core.config_loader import load_config
from recon_core.device import pick_device
from recon_core.diagnostics import scorer
from recon_core.metrics.catalogue import SEGMENTATION, label
from recon_core.metrics.image_quality import image_quality
from recon_core.modalities import get_modality
from recon_core.reconstructors import build_reconstructor
from recon_core.runner.study import operating_thresholds, split_data


def main(argv: list[str] | None = None) -> list[tuple[int, float, float]]:
    """Prints the table and returns (steps, seconds per image, PSNR) per step count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--level", type=float, help="default: the study's most degraded level")
    parser.add_argument("--steps", type=int, nargs="+", help="default: 10 25 50 and the full schedule")
    parser.add_argument("--cache", default="data/cache", help="folder holding the study's checkpoints/")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    device = pick_device(args.device)
    checkpoints = Path(args.cache) / "checkpoints"
    modality = get_modality(config.modality)
    cohort = modality.cohort_source(config).load()
    test = split_data(cohort, "test")
    take = slice(0, args.images)
    clean = torch.from_numpy(test.images[take][:, None])
    truth = None if test.masks is None else torch.from_numpy(test.masks[take][:, None])
    ids = test.rows.image_id.iloc[take].tolist()
    physics = modality.build_physics(config)
    level = args.level or physics.axis.worst_first(config.physics.levels)[0]
    measurement = physics.measure(clean, level, ids)
    degraded = physics.to_image(measurement, level)
    task_models = modality.task_models(config, cohort.labels, device)
    for model in task_models:
        model.load(checkpoints)
    classifier = scorer(task_models)
    thresholds = np.array(list(operating_thresholds(modality, cohort, classifier).values()))
    clean_calls = classifier.evaluate(clean, None).scores >= thresholds
    full = config.reconstructors.diffusion.train_timesteps
    print(f"{config.name}: {len(ids)} test images at {level:g} {physics.level_unit}, device {device}")
    print(f"{'steps':>6}{'s / image':>11}{'PSNR dB':>9}{'SSIM':>7}  {'task':<40}")
    out = []
    for steps in args.steps or [10, 25, 50, full]:
        tuned = dataclasses.replace(config, reconstructors=dataclasses.replace(
            config.reconstructors, diffusion=dataclasses.replace(config.reconstructors.diffusion,
                                                                 sampling_steps=steps, n_samples=1)))
        diffusion = build_reconstructor("diffusion", tuned, device)
        diffusion.load(checkpoints)
        start = time.perf_counter()
        output = torch.cat([diffusion.reconstruct(degraded[i:i + 16], physics, level, measurement[i:i + 16],
                                                  ids[i:i + 16]) for i in range(0, len(ids), 16)])
        seconds = (time.perf_counter() - start) / len(ids)
        quality = image_quality(output, clean)
        answers = [model.evaluate(output, truth) for model in task_models]
        calls = answers[task_models.index(classifier)].scores >= thresholds
        task = f"decisions as on clean {float((calls == clean_calls).mean()):.3f}"
        for name in SEGMENTATION:
            values = [a.metrics[name] for a in answers if name in a.metrics]
            if values:
                task += f", mean {label(name)} {float(np.nanmean(values[0])):.3f}"
        psnr = float(quality["psnr"].mean())
        print(f"{steps:>6}{seconds:>11.3f}{psnr:>9.2f}{float(quality['ssim'].mean()):>7.3f}  {task:<40}")
        out.append((steps, seconds, psnr))
    return out


if __name__ == "__main__":
    main()
