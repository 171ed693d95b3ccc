"""Where generated files live: everything under one cache folder (data/cache by default)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: $TANDEM_CACHE or data/cache under the working directory."""
    return Path(os.environ.get("TANDEM_CACHE", "data/cache"))


def default_store_path() -> Path:
    """The DuckDB store the CLI writes and the dashboard reads."""
    return cache_dir() / "tandem.duckdb"


def checkpoint_dir() -> Path:
    """Model weights, named by the hash of what determines them."""
    return cache_dir() / "checkpoints"


def progress_path() -> Path:
    """Progress of the current CLI build, polled by the dashboard."""
    return cache_dir() / "progress.json"


def build_log() -> Path:
    """The output of the last build started from the dashboard."""
    return cache_dir() / "build.log"
