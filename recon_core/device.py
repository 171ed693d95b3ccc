"""Chooses where models run: CUDA when present, CPU otherwise; nothing ever requires a GPU."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """'auto' → cuda if available else cpu; 'cpu'/'cuda' force a choice (cuda must exist)."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
    return torch.device(preference)


def network_precision(device: torch.device, precision: str) -> AbstractContextManager:
    """The networks' arithmetic inside the block: bfloat16 autocast for 'bf16', float32 (no autocast) otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
