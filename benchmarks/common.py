"""What the model benchmarks share: a config cut to a small cohort, the device named as figures cite it, fair clocks."""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from recon_core.cohorts.base import SPLITS
from recon_core.config import MIN_SPLIT_SUBJECTS, StudyConfig, check_values
from recon_core.config_loader import validate
from recon_core.modalities import get_modality


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
