"""Derives every random draw's seed from (base seed, image id, level) so results never depend on batching."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (blake2b: stable across runs and platforms)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def numpy_rng(*parts: object) -> np.random.Generator:
    """NumPy generator seeded from parts."""
    return np.random.default_rng(derive_seed(*parts))


@contextmanager
def seeded_torch(*parts: object) -> Iterator[None]:
    """Torch's global generator seeded from parts inside the block, and left as it was outside.

    Network construction runs inside one, so initial weights depend on the config alone, never on
    what ran earlier in the process (a loaded checkpoint or a retrained model before it).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(*parts))
        yield
