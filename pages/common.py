"""Shared dashboard plumbing: the store, cached queries and the sidebar run choice (not a page)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from recon_core import paths, plots
from recon_core.config import from_dict
from recon_core.device import pick_device
from recon_core.progress import read_progress, write_progress
from recon_core.runner.replay import CaseReplayer
from recon_core.store import CLEAN, Store, queries

ROOT = Path(__file__).resolve().parent.parent
ROUTED = "_routed_by_app"
WANTED = "_wanted_page"


def ensure_routed(page: str) -> None:
    """Hands a page run without app.py over to app.py, which then comes back to the page.

    Streamlit keeps a legacy mode for apps with a `pages/` folder: when the very first request
    to a fresh server is a page's URL, it runs that file directly and app.py's st.navigation
    (wide layout, page list) never runs. Going through app.py once switches the server out of it.
    """
    if not st.session_state.get(ROUTED):
        st.session_state[WANTED] = page
        st.switch_page("app.py")


@st.cache_resource
def get_store(path: str) -> Store:
    """One Store object per path for the server's lifetime (connections stay short-lived)."""
    return Store(path, timeout=20.0)


def store() -> Store:
    """The store this dashboard reads ($TANDEM_STORE or data/cache/tandem.duckdb)."""
    return get_store(os.environ.get("TANDEM_STORE", str(paths.default_store_path())))


@st.cache_data(show_spinner=False, max_entries=64)
def cached_runs(path: str, version: str) -> pd.DataFrame:
    """Runs table, recomputed only when `version` changes."""
    return queries.runs(get_store(path))


@st.cache_data(show_spinner=False, max_entries=64)
def cached_aggregates(path: str, key: str, version: str) -> pd.DataFrame:
    """All aggregates of a run, recomputed only when a new cell lands."""
    return queries.aggregates(get_store(path), key)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_correlations(path: str, key: str, version: str) -> pd.DataFrame:
    """Quality–task correlations of a run."""
    return queries.correlations(get_store(path), key)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_image_scores(path: str, key: str, image_id: str, version: str) -> pd.DataFrame:
    """The classifier's scores for one image on every road."""
    return queries.image_scores(get_store(path), key, image_id)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_examples(path: str, key: str, reconstructor: str, level: float, version: str) -> pd.DataFrame:
    """Example pixels of one cell."""
    return queries.examples(get_store(path), key, reconstructor, level)


def runs() -> pd.DataFrame:
    """Stored runs (cached until the store changes)."""
    s = store()
    return cached_runs(str(s.path), queries.data_version(s))


@st.cache_resource(show_spinner="Loading the run's models…", max_entries=4)
def get_replayer(config_json: str, checkpoint_dir: str) -> CaseReplayer:
    """A run's cohort description and trained models, loaded once per server (CUDA when present)."""
    return CaseReplayer(from_dict(json.loads(config_json)), Path(checkpoint_dir), pick_device())


def run_config_json(key: str) -> str:
    """The stored config of a run as canonical JSON (a stable cache key)."""
    return json.dumps(queries.run_config(store(), key) or {}, sort_keys=True)


def multiselect_growing(label: str, options: list, key: str, **kwargs) -> list:
    """A sidebar multiselect that keeps the user's choice but adds options that appear later.

    While a build runs, new reconstructors and levels land; they join the selection unless the
    user had already seen and removed them.
    """
    seen_key = f"_{key}_seen"
    seen = st.session_state.get(seen_key)
    if key in st.session_state:
        kept = [o for o in st.session_state[key] if o in options]
        fresh = [o for o in options if seen is not None and o not in seen]
        st.session_state[key] = kept + fresh
    st.session_state[seen_key] = list(options)
    return st.sidebar.multiselect(label, options, default=None if key in st.session_state else options,
                                  key=key, **kwargs)


def pick_run(frame: pd.DataFrame) -> pd.Series | None:
    """Sidebar: modality then run; the choice is kept across pages in session state."""
    if frame.empty:
        return None
    modalities = sorted(frame.modality.unique())
    labels = {"xray": "X-ray (low-dose)", "mri": "MRI (accelerated)"}
    modality = st.sidebar.selectbox("Modality", modalities, key="modality",
                                    format_func=lambda m: labels.get(m, m))
    options = frame[frame.modality == modality]
    names = [f"{r['name']} · {r.config_hash[:8]} · {r.status}" for _, r in options.iterrows()]
    if st.session_state.get("run_index", 0) >= len(names):
        st.session_state["run_index"] = 0
    choice = st.sidebar.selectbox("Study run", range(len(names)), format_func=lambda i: names[i], key="run_index")
    return options.iloc[choice]


def running_build() -> dict | None:
    """Progress of the build this dashboard (or `make demo`) started, while its process lives."""
    progress = read_progress(paths.progress_path())
    if not progress or progress.get("stage") == "done":
        return None
    try:
        os.kill(int(progress["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return progress


def start_cli_run(command: str, config: Path | None = None) -> None:
    """Starts `python -m recon_core <command>` as its own process, so every page stays responsive.

    Progress is recorded at once with the child's pid, so a rerun already sees the build (no second start).
    """
    log = paths.cache_dir() / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "recon_core", command, "--store", str(store().path),
            "--progress-file", str(paths.progress_path())]
    if config is not None:
        args += ["--config", str(config)]
    with open(log, "w") as out:
        child = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    write_progress(paths.progress_path(), "starting", 0, 1, pid=child.pid)


def page_run() -> tuple[pd.Series, Store, str]:
    """The sidebar's run for a results page; without any run the page points to Home and stops."""
    run = pick_run(runs())
    if run is None:
        st.info("No results yet. Build the demo study on the Home page, or run `make demo`.")
        st.page_link("pages/home.py", label="Go to Home", icon="🏠")
        st.stop()
    return run, store(), run.config_hash


def reconstructed_cells(s: Store, key: str) -> pd.DataFrame:
    """A run's finished reconstructed cells; without any the page says so and stops."""
    cells = queries.cells(s, key)
    cells = cells[(cells.status == "done") & (cells.reconstructor != CLEAN)]
    if cells.empty or not queries.thresholds(s, key):
        st.info("No reconstructed cells have landed for this run yet.")
        st.stop()
    return cells


@st.cache_data(show_spinner=False, max_entries=512)
def cached_plot(builder: str, *args, **kwargs):
    """A figure from recon_core.plots, built once per distinct input.

    Building a plotly figure costs 20–200 ms; its inputs here are small filtered tables, so
    hashing them is cheap and an unrelated widget change redraws from the cache.
    """
    return getattr(plots, builder)(*args, **kwargs)

