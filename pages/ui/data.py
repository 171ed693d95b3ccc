"""The dashboard's reads: the store and the read model through Streamlit's caches, and case replays.

Every read is served from the data cache until the store changes; the store's version comes
from file metadata, so a rerun with nothing new opens no connection.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from recon_core import paths, results
from recon_core.config_loader import from_dict
from recon_core.device import pick_device
from recon_core.runner.replay import CaseReplayer
from recon_core.store import Store, StoreError, queries


@st.cache_resource
def get_store(path: str) -> Store:
    """One Store object per path for the server's lifetime (connections stay short-lived)."""
    return Store(path, timeout=20.0)


def store() -> Store:
    """The store this dashboard reads ($TANDEM_STORE or data/cache/tandem.duckdb)."""
    return get_store(os.environ.get("TANDEM_STORE", str(paths.default_store_path())))


_READS: dict[str, Callable[..., Any]] = {}


@st.cache_data(show_spinner=False, max_entries=512)
def _cached(read: str, path: str, version: str, *args: Any) -> Any:
    return _READS[read](get_store(path), *args)


def _served(read: Callable[..., Any]) -> Callable[..., Any]:
    """`read(store, *args)` as `read(*args)` on this dashboard's store, cached until the store changes."""
    name = f"{read.__module__}.{read.__qualname__}"
    _READS[name] = read

    def served(*args: Any) -> Any:
        s = store()
        return _cached(name, str(s.path), s.version(), *args)

    served.__doc__ = read.__doc__
    return served


_runs = _served(results.runs)


def runs() -> pd.DataFrame:
    """Every stored run (results.runs); a damaged store file stops the page with its named error, not a traceback."""
    try:
        return _runs()
    except StoreError as exc:
        st.error(str(exc))
        st.stop()


run_view = _served(results.run_view)
run_config = _served(queries.run_config)
cells = _served(queries.cells)
thresholds = _served(queries.thresholds)
aggregates = _served(queries.aggregates)
image_rows = _served(queries.image_rows)
examples = _served(queries.examples)
correlations = _served(queries.correlations)
image_scores = _served(queries.image_scores)


@st.cache_resource(show_spinner="Loading the run's models…", max_entries=4)
def get_replayer(config_json: str, checkpoint_dir: str) -> CaseReplayer:
    """A run's cohort source and trained models, loaded once per server (CUDA when present)."""
    return CaseReplayer(from_dict(json.loads(config_json)), Path(checkpoint_dir), pick_device())


def run_config_json(key: str) -> str:
    """The stored config of a run as canonical JSON (a stable cache key)."""
    return json.dumps(run_config(key) or {}, sort_keys=True)
