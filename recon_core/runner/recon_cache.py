"""Disk cache of expensive reconstructions (diffusion sampling), so a second sweep never samples again.

Keyed by (reconstructor name, its cache_key() — weights and sampling settings —, level, image
id): one .npz per (reconstructor, key, level) under `<cache>/reconstructions/`, holding each
image's output and, when posterior samples were drawn, their per-pixel std. A changed metric,
threshold or statistic reuses the cached images; changed weights or settings change the key.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


class ReconstructionCache:
    """Outputs of one reconstructor at one level, by image id."""

    def __init__(self, root: Path, reconstructor: str, key: str, level: float) -> None:
        self.path = Path(root) / f"{reconstructor}-{key}" / f"{level:g}.npz"
        self.outputs: dict[str, np.ndarray] = {}
        self.stds: dict[str, np.ndarray] = {}
        self.dirty = False
        if not self.path.exists():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                for name in data.files:
                    kind, _, image_id = name.partition(":")
                    (self.outputs if kind == "out" else self.stds)[image_id] = data[name]
        except (OSError, ValueError, zipfile.BadZipFile):  # unreadable (e.g. truncated by a full disk): resample
            self.outputs, self.stds, self.dirty = {}, {}, True

    def get(self, image_id: str) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(output, std or None) of a cached image, else None."""
        if image_id not in self.outputs:
            return None
        return self.outputs[image_id], self.stds.get(image_id)

    def put(self, image_id: str, output: np.ndarray, std: np.ndarray | None) -> None:
        self.outputs[image_id] = output.astype(np.float32)
        if std is not None:
            self.stds[image_id] = std.astype(np.float32)
        self.dirty = True

    def save(self) -> None:
        """Writes the file atomically (only when something new was added)."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"out:{k}": v for k, v in self.outputs.items()} | {f"std:{k}": v for k, v in self.stds.items()}
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(self.path)
        self.dirty = False
