"""The dashboard's reads: the store and the read model through Streamlit's caches, and case replays.

Every read is served from the data cache until the store changes; the store's version comes
from file metadata, so a rerun with nothing new opens no connection. Reads go to a read-only
snapshot of the store (`recon_core.store.snapshot`), pinned when a page run starts (its first
read, `runs()`): a sweep is never held up by the dashboard's reads, and one page run never mixes
two versions of the store.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from recon_core import exports, paths, results
from recon_core.config_loader import from_dict
from recon_core.device import pick_device
from recon_core.runner.replay import CaseReplayer
from recon_core.store import Store, StoreError, queries
from recon_core.store.snapshot import snapshot


@st.cache_resource(max_entries=16)
def get_store(path: str) -> Store:
    """One Store object per path (the store, or one of its snapshots); connections stay short-lived."""
    return Store(path, timeout=20.0)


_PINNED = threading.local()
"""The snapshot this thread's page run reads ((path, version)); Streamlit runs a session's script in a thread."""


def pin() -> tuple[str, str]:
    """Takes (or reuses) the snapshot of the store's current version for the reads of this page run."""
    s = store()
    version = s.version()
    _PINNED.value = (str(snapshot(s, paths.cache_dir() / "snapshots").path), version)
    return _PINNED.value


def _pinned() -> tuple[str, str]:
    """This page run's (snapshot path, version), pinned on first use."""
    return getattr(_PINNED, "value", None) or pin()


def version() -> str:
    """The store version this page run reads (a cache key for derived tables)."""
    return _pinned()[1]


def reading() -> Store:
    """The snapshot this page run reads, for a read outside the cached ones (the report)."""
    return get_store(_pinned()[0])


def store() -> Store:
    """The store this dashboard reads ($TANDEM_STORE or data/cache/tandem.duckdb)."""
    return get_store(os.environ.get("TANDEM_STORE", str(paths.default_store_path())))


_READS: dict[str, Callable[..., Any]] = {}


@st.cache_data(show_spinner=False, max_entries=512)
def _cached(read: str, path: str, version: str, *args: Any, **kwargs: Any) -> Any:
    return _READS[read](get_store(path), *args, **kwargs)


def _served(read: Callable[..., Any]) -> Callable[..., Any]:
    """`read(store, *args, **kwargs)` as `read(*args, **kwargs)` on this dashboard's store, cached until the store
    changes."""
    name = f"{read.__module__}.{read.__qualname__}"
    _READS[name] = read

    def served(*args: Any, **kwargs: Any) -> Any:
        path, version = _pinned()
        return _cached(name, path, version, *args, **kwargs)

    served.__doc__ = read.__doc__
    return served


_runs = _served(results.runs)


def runs() -> pd.DataFrame:
    """Every stored run (results.runs), read first by every page: it pins the page run's snapshot.

    A damaged store file stops the page with its named error, not a traceback.
    """
    try:
        pin()
        return _runs()
    except StoreError as exc:
        st.error(str(exc))
        st.stop()


run_view = _served(results.run_view)
run_config = _served(queries.run_config)
cells = _served(queries.cells)
failed_cells = _served(queries.failed_cells)
model_cards = _served(queries.model_cards)
thresholds = _served(queries.thresholds)
aggregates = _served(queries.aggregates)
image_rows = _served(queries.image_rows)
examples = _served(queries.examples)
correlations = _served(queries.correlations)
image_scores = _served(queries.image_scores)
sample_scores = _served(queries.sample_scores)
sample_count = _served(results.sample_count)
calibration_curve = _served(results.calibration_curve)
hallucination_rates = _served(results.hallucination_rates)
mitigation_effects = _served(results.mitigation_effects)
mitigation_frontier = _served(results.mitigation_frontier)


@st.cache_resource(show_spinner="Loading the run's models…", max_entries=4)
def get_replayer(config_json: str, checkpoint_dir: str) -> CaseReplayer:
    """A run's cohort source and trained models, loaded once per server (CUDA when present)."""
    return CaseReplayer(from_dict(json.loads(config_json)), Path(checkpoint_dir), pick_device())


def run_config_json(key: str) -> str:
    """The stored config of a run as canonical JSON (a stable cache key)."""
    return json.dumps(run_config(key) or {}, sort_keys=True)


def ci_level(key: str) -> float:
    """The run's interval level (`evaluation.ci_level`): what its stored intervals, and those computed on a page
    (flip and hallucination rates), are drawn at."""
    return exports.ci_level(run_config(key))
