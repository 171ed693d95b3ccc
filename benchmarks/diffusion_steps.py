"""Diffusion sampling steps against time, image quality and the task: the measured basis of the default.

Samples the same test images of a trained study with 10, 25, 50 and the full number of DDIM
steps (the training schedule's length) and prints, per step count, seconds per image, PSNR,
SSIM and the task metric: for X-ray the share of (image, finding) decisions at the study's
fixed thresholds that agree with the decisions on the clean image; for MRI the segmenter's
mean Dice. Needs the study's checkpoints (run its sweep first).

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

from recon_core.cohorts import load_cohort
from recon_core.config import load_config
from recon_core.device import pick_device
from recon_core.diagnostics import Classifier, choose_thresholds
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.metrics import image_quality
from recon_core.metrics.segmentation import dice
from recon_core.physics import build_physics
from recon_core.reconstructors import build_reconstructor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--level", type=float, help="default: the study's most degraded level")
    parser.add_argument("--steps", type=int, nargs="+", help="default: 10 25 50 and the full schedule")
    parser.add_argument("--cache", default="data/cache", help="folder holding the study's checkpoints/")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    config = load_config(args.config)
    device = pick_device(args.device)
    checkpoints = Path(args.cache) / "checkpoints"
    cohort = load_cohort(config)
    rows, images = cohort.split("test")
    take = slice(0, args.images)
    clean = torch.from_numpy(images[take][:, None])
    ids = rows.image_id.iloc[take].tolist()
    mri = config.modality == "mri"
    level = args.level or (max(config.physics.levels) if mri else min(config.physics.levels))
    physics = build_physics(config)
    measurement = physics.measure(clean, level, ids)
    degraded = physics.to_image(measurement, level)
    if mri:
        segmenter = Segmenter(config, device)
        segmenter.load(checkpoints)
        truth = torch.from_numpy(cohort.split_masks("test")[take][:, None])
    else:
        classifier = Classifier(config, cohort.labels, device)
        classifier.load(checkpoints)
        val_rows, val_images = cohort.split("val")
        with torch.no_grad():
            val_scores = classifier.predict(torch.from_numpy(val_images[:, None]).to(device)).cpu().numpy()
        thresholds = np.array(list(choose_thresholds(cohort.targets(val_rows), val_scores, cohort.labels).values()))
        with torch.no_grad():
            clean_calls = classifier.predict(clean.to(device)).cpu().numpy() >= thresholds
    full = config.reconstructors.diffusion.train_timesteps
    print(f"{config.name}: {len(ids)} test images at {level:g} {physics.level_unit}, device {device}")
    print(f"{'steps':>6}{'s / image':>11}{'PSNR dB':>9}{'SSIM':>7}  {'task':<30}")
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
        with torch.no_grad():
            if mri:
                task = f"mean Dice {float(dice(segmenter.predict(output.to(device)).cpu(), truth).mean()):.3f}"
            else:
                calls = classifier.predict(output.to(device)).cpu().numpy() >= thresholds
                task = f"decisions as on clean {float((calls == clean_calls).mean()):.3f}"
        print(f"{steps:>6}{seconds:>11.3f}{float(quality['psnr'].mean()):>9.2f}{float(quality['ssim'].mean()):>7.3f}"
              f"  {task:<30}")


if __name__ == "__main__":
    main()
