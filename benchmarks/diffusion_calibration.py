"""Does the diffusion model's posterior spread say where its error is? Per level and step count, measured.

Trains the study's diffusion reconstructor alone (through the model contract, as the study fits
it: `fit` on the 'recon_train' split degraded on the fly at the study's levels), or loads it from
`--cache`/checkpoints when that file exists, then draws `n_samples` posterior samples of the first
`--images` test images at each level (default: the two most degraded) for each step count
(default: the config's `sampling_steps`) and prints per (level, steps): seconds per image (all
its samples), PSNR and SSIM of the posterior mean, PSNR of one sample, the mean per-image
spread–error Spearman ρ (`recon_core.metrics.uncertainty.spread_calibration`) with a 95 %
percentile-bootstrap CI over images, the mean 95 %-interval coverage, the mean posterior std,
and the training's steps/s (absent when loaded). `--set key=value` changes a diffusion setting
(YAML values, e.g. `--set start=degraded eta=1`) so that variants are measured on one cohort;
the checkpoint's name is the variant's weights key, so variants never mix.

CPU (the X-ray demo; about 3 min of training on 2 quiet cores, then sampling):
    python -m benchmarks.diffusion_calibration --config configs/demo.yaml --images 32 \
        --cache /work/diffusion-cache --out calibration.json [--steps 3 5] [--set start=degraded]
GPU (trains gpu.yaml's diffusion to the end: 1,500 steps, estimated 3–5 min on an H100 from its
≈ 6 TFLOP a step; the cohort ≈ 20 s; then ≈ 1 min of sampling; the H100 command, timeout 600 s):
    python -m benchmarks.diffusion_calibration --config configs/gpu.yaml --device cuda --images 32 \
        --steps 5 10 20 --cache /tmp/diffusion-gpu --out $OUT/diffusion_gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.common import clock, device_name
from recon_core.config import StudyConfig, check_values
from recon_core.config_loader import from_dict
from recon_core.device import pick_device
from recon_core.metrics.image_quality import image_quality
from recon_core.metrics.uncertainty import spread_calibration
from recon_core.modalities import get_modality
from recon_core.progress import silent
from recon_core.reconstructors import build_reconstructor
from recon_core.runner.study import split_data
from recon_core.seeding import numpy_rng


def variant(path: str, settings: list[str], train_steps: int | None) -> StudyConfig:
    """The config at `path` with its diffusion settings changed by `key=value` texts (YAML values), checked."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    diffusion = data.setdefault("reconstructors", {}).setdefault("diffusion", {})
    for setting in settings:
        key, _, value = setting.partition("=")
        diffusion[key] = yaml.safe_load(value)
    if train_steps is not None:
        diffusion["steps"] = train_steps
    return check_values(from_dict(data))


def with_sampling_steps(config: StudyConfig, steps: int) -> StudyConfig:
    """The same study sampled with `steps` steps (the file is read once: a config edited meanwhile changes nothing)."""
    diffusion = dataclasses.replace(config.reconstructors.diffusion, sampling_steps=steps)
    return check_values(dataclasses.replace(config, reconstructors=dataclasses.replace(config.reconstructors,
                                                                                     diffusion=diffusion)))


def bootstrap_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of `values` (resampling images)."""
    rng = numpy_rng(seed, "diffusion-calibration")
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Prints the table and returns one row per (level, steps) with the figures it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=32, help="test images sampled per level")
    parser.add_argument("--levels", type=float, nargs="+", help="default: the study's two most degraded levels")
    parser.add_argument("--steps", type=int, nargs="+", help="sampling step counts; default: the config's")
    parser.add_argument("--steps-train", type=int, help="training steps; default: the config's")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="diffusion settings to change")
    parser.add_argument("--batch", type=int, default=8, help="images sampled together (times n_samples)")
    parser.add_argument("--cache", default="data/cache", help="folder of checkpoints/ (read, and written on training)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="also write the rows and the setting as JSON here")
    args = parser.parse_args(argv)
    config = variant(args.config, args.set, args.steps_train)
    settings = config.reconstructors.diffusion
    if settings.n_samples < 2:
        parser.error("the spread needs n_samples ≥ 2 (use --set n_samples=4)")
    device = pick_device(args.device)
    checkpoints = Path(args.cache) / "checkpoints"
    modality = get_modality(config.modality)
    physics = modality.build_physics(config)
    started = time.perf_counter()
    cohort = modality.cohort_source(config).load()
    cohort_seconds = time.perf_counter() - started
    diffusion = build_reconstructor("diffusion", config, device)
    trained = not diffusion.checkpoint_path(checkpoints).exists()
    started = clock(device)
    diffusion.fit(split_data(cohort, "recon_train", physics), checkpoints, silent, {})
    train_seconds = clock(device) - started
    rate = settings.steps / train_seconds if trained else None
    test = split_data(cohort, "test")
    clean = torch.from_numpy(test.images[:args.images][:, None])
    ids = test.rows.image_id.iloc[:args.images].tolist()
    levels = args.levels or physics.axis.worst_first(config.physics.levels)[:2]
    print(f"{config.name} diffusion ({', '.join(f'{k}={v}' for k, v in vars(settings).items())}) on "
          f"{device_name(device)}: cohort {cohort_seconds:.0f} s, "
          + (f"trained {settings.steps} steps in {train_seconds:.0f} s ({rate:.2f} steps/s)" if trained
             else "loaded from the cache"))
    print(f"{'level':>8}{'steps':>6}{'s/image':>9}{'PSNR':>7}{'SSIM':>7}{'1-PSNR':>8}{'rho':>7}{'95% CI':>16}"
          f"{'cover':>7}{'std':>8}")
    rows = []
    for level in levels:
        measurement = physics.measure(clean, level, ids)
        degraded = physics.to_image(measurement, level)
        for steps in args.steps or [settings.sampling_steps]:
            sampler = build_reconstructor("diffusion", with_sampling_steps(config, steps), device)
            sampler.load(checkpoints)
            start = clock(device)
            samples = torch.cat([sampler.reconstruct_samples(degraded[i:i + args.batch], physics, level,
                                                             measurement[i:i + args.batch], ids[i:i + args.batch])
                                 for i in range(0, len(ids), args.batch)], dim=1).float()
            seconds = (clock(device) - start) / len(ids)
            mean, std = samples.mean(0), samples.std(0)
            quality, one = image_quality(mean, clean), image_quality(samples[0], clean)
            calibration = spread_calibration(mean, std, clean, len(samples))
            rho = calibration["spread_error_rho"]
            low, high = bootstrap_ci(rho)
            row = {"level": level, "steps": steps, "seconds_per_image": seconds,
                   "psnr": float(quality["psnr"].mean()), "ssim": float(quality["ssim"].mean()),
                   "sample_psnr": float(one["psnr"].mean()), "spread_error_rho": float(rho.mean()),
                   "rho_ci": [low, high], "interval_coverage": float(calibration["interval_coverage"].mean()),
                   "posterior_std": float(calibration["posterior_std"].mean()), "train_steps_per_s": rate}
            print(f"{level:>8g}{steps:>6}{seconds:>9.3f}{row['psnr']:>7.2f}{row['ssim']:>7.3f}"
                  f"{row['sample_psnr']:>8.2f}{row['spread_error_rho']:>7.3f}{f'[{low:.3f}, {high:.3f}]':>16}"
                  f"{row['interval_coverage']:>7.3f}{row['posterior_std']:>8.4f}")
            rows.append(row)
    if args.out:
        setting = {key: list(value) if isinstance(value, tuple) else value for key, value in vars(settings).items()}
        Path(args.out).write_text(json.dumps({
            "config": args.config, "diffusion": setting, "device": device_name(device), "images": len(ids),
            "trained": trained, "train_seconds": train_seconds if trained else None, "cohort_seconds": cohort_seconds,
            "rows": rows}, indent=1), encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
