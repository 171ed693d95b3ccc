"""A cheap content fingerprint of a dataset on disk: changed data must never reuse stored results.

Hand-written because it is a few lines of hashing over our own manifest: the manifest's bytes in
full, every listed file's size and modification time, and the first 64 KiB of a fixed sample of
the files (a full hash of every image would read the whole dataset on each run).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

SAMPLED_FILES = 64
SAMPLED_BYTES = 64 * 1024


def dataset_fingerprint(manifest: Path, files: Sequence[Path]) -> str:
    """16 hex digits over the manifest's bytes and the listed files (size, time; sampled contents)."""
    digest = hashlib.sha256(manifest.read_bytes())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{file}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    step = max(1, len(files) // SAMPLED_FILES)
    for file in list(files)[::step][:SAMPLED_FILES]:
        with open(file, "rb") as handle:
            digest.update(handle.read(SAMPLED_BYTES))
    return digest.hexdigest()[:16]
