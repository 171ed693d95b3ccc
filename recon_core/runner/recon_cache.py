"""Disk cache of expensive reconstructions (diffusion sampling), so a second sweep never samples again.

Keyed by (reconstructor name, its cache_key() — weights and sampling settings —, level, image
id): one .npz per (reconstructor, key, level) under `<cache>/reconstructions/`, holding each
image's output and, when posterior samples were drawn, their per-pixel std (both float32) and
the samples themselves (float16, halving the file: they feed only the diagnostic model's
per-sample calls, and the runner rounds fresh samples the same way, so a call near a threshold
is the same whether its sample was cached or not). A changed metric, threshold or statistic
reuses the cached images; changed weights or settings change the key.
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
        self.samples: dict[str, np.ndarray] = {}
        self.dirty = False
        if not self.path.exists():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                for name in data.files:
                    kind, _, image_id = name.partition(":")
                    {"out": self.outputs, "std": self.stds, "smp": self.samples}[kind][image_id] = data[name]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # unreadable (e.g. truncated): resample
            self.outputs, self.stds, self.samples, self.dirty = {}, {}, {}, True

    def get(self, image_id: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
        """(output, std or None, samples (n, …) or None) of a cached image, else None."""
        if image_id not in self.outputs:
            return None
        return self.outputs[image_id], self.stds.get(image_id), self.samples.get(image_id)

    def put(self, image_id: str, output: np.ndarray, std: np.ndarray | None, samples: np.ndarray | None) -> None:
        self.outputs[image_id] = output.astype(np.float32)
        if std is not None:
            self.stds[image_id] = std.astype(np.float32)
        if samples is not None:
            self.samples[image_id] = samples.astype(np.float16)
        self.dirty = True

    def save(self) -> None:
        """Writes the file atomically (only when something new was added)."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{kind}:{k}": v for kind, table in (("out", self.outputs), ("std", self.stds), ("smp", self.samples))
                  for k, v in table.items()}
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(self.path)
        self.dirty = False
