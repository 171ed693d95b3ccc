"""Derives every random draw's seed from (base seed, image id, level) so results never depend on batching."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (blake2b: stable across runs and platforms)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def numpy_rng(*parts: object) -> np.random.Generator:
    """NumPy generator seeded from parts."""
    return np.random.default_rng(derive_seed(*parts))
