"""What the model benchmarks share: a config cut to a small cohort, the device named as figures cite it, fair clocks."""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from recon_core.cohorts.base import SPLITS
from recon_core.config import MIN_SPLIT_SUBJECTS, StudyConfig, check_values
from recon_core.config_loader import load_config, validate
from recon_core.device import pick_device
from recon_core.diagnostics.task import TaskModel
from recon_core.modalities import get_modality
from recon_core.models.batches import SplitData
from recon_core.physics.base import Acquisition
from recon_core.runner.study import split_data


def sized_config(config: StudyConfig, images: Mapping[str, int], image_size: int | None = None) -> StudyConfig:
    """The config with a generated cohort just large enough for `images` images in each named split, checked again.

    Every split keeps the config's own minimum of subjects (the config check's, which also gives an
    MRI cohort both sexes), so a small request never builds a cohort the study itself would refuse.
    `image_size` (None: the config's) lets smoke tests run any config at a few pixels.
    """
    modality = get_modality(config.modality)
    per_subject = config.cohort.slices_per_subject if modality.unit == "patient" else 1
    fractions = config.cohort.split_fractions
    needed = [math.ceil(count / per_subject / fractions[SPLITS.index(split)]) + 1 for split, count in images.items()]
    subjects = max([*needed, math.ceil(MIN_SPLIT_SUBJECTS / min(fractions)) + 1])
    cohort = dataclasses.replace(config.cohort, n_subjects=subjects,
                                 image_size=image_size or config.cohort.image_size)
    return check_values(validate(dataclasses.replace(config, cohort=cohort)))


def device_name(device: torch.device) -> str:
    """The device as a reported figure names it: the GPU's model on CUDA, the CPU's model and threads otherwise."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    model = models[0] if models else platform.processor() or platform.machine()
    return f"cpu ({model}, {torch.get_num_threads()} torch threads)"


def clock(device: torch.device) -> float:
    """Seconds on a monotonic clock once the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def first(data: SplitData, count: int) -> SplitData:
    """The first `count` images of a split with their rows and masks."""
    return dataclasses.replace(data, rows=data.rows.iloc[:count], images=data.images[:count],
                               masks=None if data.masks is None else data.masks[:count])


@dataclass
class SweepBench:
    """What a sweep benchmark times cells on: the sized config, its test images, physics and task models, a level."""

    config: StudyConfig
    device: torch.device
    test: SplitData
    physics: Acquisition
    task_models: list[TaskModel]
    level: float
    """The middle one of the config's levels."""


def sweep_bench(config_path: str, images: int, image_size: int | None, device: str) -> SweepBench:
    """The config sized for `images` test images (at `image_size`), its untrained task models in eval mode."""
    config = sized_config(load_config(config_path), {"test": images}, image_size)
    modality = get_modality(config.modality)
    chosen = pick_device(device)
    cohort = modality.cohort_source(config).load()
    task_models = modality.task_models(config, cohort.labels, chosen)
    for model in task_models:
        model.net.eval()
    return SweepBench(config, chosen, first(split_data(cohort, "test"), images), modality.build_physics(config),
                      task_models, float(sorted(config.physics.levels)[len(config.physics.levels) // 2]))
