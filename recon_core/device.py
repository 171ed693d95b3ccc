"""Chooses where models run: CUDA when present, CPU otherwise; nothing ever requires a GPU."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """'auto' → cuda if available else cpu; 'cpu'/'cuda' force a choice (cuda must exist)."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
    return torch.device(preference)
