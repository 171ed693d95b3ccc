"""Saves and loads model weights safely: metadata checked, torch.load only with weights_only=True."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or made for another architecture."""


def save_checkpoint(path: Path, model: torch.nn.Module, arch: dict[str, Any]) -> None:
    """Writes state dict plus the architecture description it belongs to (atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")  # writers on a cluster never share it
    torch.save({"arch": arch, "state_dict": model.state_dict()}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, model: torch.nn.Module, arch: dict[str, Any]) -> None:
    """Loads weights into model after checking the checkpoint was made for the same architecture."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc):  # torch's advice to load unsafely is never ours to pass on
            reason = "not a plain weights file"
        raise CheckpointError(f"{path}: unreadable checkpoint ({reason}); delete the file to train that model "
                              "again (stored results are kept)") from None
    if not isinstance(payload, dict) or "arch" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a Tandem checkpoint (no 'arch'/'state_dict')")
    if payload["arch"] != arch:
        raise CheckpointError(f"{path}: checkpoint is for architecture {payload['arch']}, expected {arch}")
    model.load_state_dict(payload["state_dict"])
