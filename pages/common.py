"""Shared dashboard plumbing: the store, cached queries and the sidebar run choice (not a page)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
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


@st.cache_data(show_spinner=False, max_entries=512)
def _cached_query(name: str, path: str, version: str, *args) -> object:
    return getattr(queries, name)(get_store(path), *args)


def query(name: str, *args) -> object:
    """`recon_core.store.queries.<name>(store, *args)`, served from the cache until the store changes.

    The store's version comes from file metadata, so a rerun with nothing new opens no connection.
    """
    s = store()
    return _cached_query(name, str(s.path), s.version(), *args)


def runs() -> pd.DataFrame:
    """Stored runs (cached until the store changes)."""
    return query("runs")


@st.cache_resource(show_spinner="Loading the run's models…", max_entries=4)
def get_replayer(config_json: str, checkpoint_dir: str) -> CaseReplayer:
    """A run's cohort description and trained models, loaded once per server (CUDA when present)."""
    return CaseReplayer(from_dict(json.loads(config_json)), Path(checkpoint_dir), pick_device())


def run_config_json(key: str) -> str:
    """The stored config of a run as canonical JSON (a stable cache key)."""
    return json.dumps(query("run_config", key) or {}, sort_keys=True)


KEPT = "_kept_choices"
"""Session slot that outlives widgets: Streamlit drops a widget's state on a page that does not draw it."""


def _restore(key: str, options: list) -> None:
    """Before drawing a shared widget: set it to the user's last choice on any page, if still valid.

    Widget ids differ between pages, so a value left over from another page would be ignored;
    setting it through the Session State API before the widget is drawn is what carries it over.
    """
    kept = st.session_state.setdefault(KEPT, {})
    if key in kept:
        value = kept[key]
        if isinstance(value, list):
            st.session_state[key] = [v for v in value if v in options]
        elif value in options:
            st.session_state[key] = value
        else:
            st.session_state.pop(key, None)  # a choice the newly picked run does not hold
    elif key in st.session_state and not isinstance(st.session_state[key], list) \
            and st.session_state[key] not in options:
        del st.session_state[key]


def _keep(key: str) -> None:
    """Records a shared widget's value; also its on_change callback, so a change is kept before the rerun."""
    st.session_state.setdefault(KEPT, {})[key] = st.session_state[key]


def multiselect_growing(label: str, options: list, key: str, **kwargs) -> list:
    """A sidebar multiselect that keeps the user's choice across pages and adds options that appear later.

    While a build runs, new reconstructors and levels land; they join the selection unless the
    user had already seen and removed them.
    """
    _restore(key, options)
    seen_key = f"_{key}_seen"
    seen = st.session_state.get(seen_key)
    if key in st.session_state:
        kept = [o for o in st.session_state[key] if o in options]
        fresh = [o for o in options if seen is not None and o not in seen]
        st.session_state[key] = kept + fresh
    st.session_state[seen_key] = list(options)
    value = st.sidebar.multiselect(label, options, default=None if key in st.session_state else options,
                                   key=key, on_change=_keep, args=(key,), **kwargs)
    _keep(key)
    return value


def attribute_label(attribute: str) -> str:
    """'sex×age_band' → 'Sex × age band'."""
    return " × ".join(part.replace("_", " ") for part in attribute.split("×")).capitalize()


@dataclass(frozen=True)
class Choices:
    """The sidebar's shared selection: what every results page shows."""

    reconstructors: list[str]
    levels: list[float]
    level: float
    attribute: str


def sidebar_choices(agg: pd.DataFrame, run: pd.Series) -> Choices:
    """Sidebar: reconstructors, levels on the curves, the level in focus and the subgroup attribute.

    The same keys on every results page, restored after a visit to Home or Run, so a choice made
    on one page holds on the next.
    """
    recons = [r for r in agg.reconstructor.unique() if r != CLEAN]
    all_levels = sorted(agg.loc[agg.reconstructor != CLEAN, "level"].unique(), reverse=True)
    if not recons:
        st.info("Only the clean baseline has landed so far; reconstructors follow.")
        st.stop()
    chosen = multiselect_growing("Reconstructors", recons, key="reconstructors")
    levels = multiselect_growing("Levels on the curves", all_levels, key="levels", format_func=lambda v: f"{v:g}")
    unit = run.level_unit
    focus = sorted(all_levels)
    worst = focus[-1] if run.modality == "mri" else focus[0]  # most undersampled / lowest dose first
    _restore("level", focus)
    level = st.sidebar.select_slider("Level in focus", options=focus, key="level", on_change=_keep, args=("level",),
                                     format_func=lambda v: f"{v:g} {unit}",
                                     **({} if "level" in st.session_state else {"value": worst}))
    _keep("level")
    attributes = sorted((a for a in agg.attribute.unique() if a not in ("all", "")),
                        key=lambda a: (a != "sex", "×" in a, a))
    _restore("attribute", attributes)
    attribute = st.sidebar.selectbox("Subgroups by", attributes, key="attribute", format_func=attribute_label,
                                     on_change=_keep, args=("attribute",))
    _keep("attribute")
    if not chosen or not levels:
        st.warning("Pick at least one reconstructor and one level in the sidebar.")
        st.stop()
    return Choices(chosen, levels, float(level), attribute)


def pick_run(frame: pd.DataFrame) -> pd.Series | None:
    """Sidebar: modality then run; the choice is kept across pages in session state."""
    if frame.empty:
        return None
    modalities = sorted(frame.modality.unique())
    labels = {"xray": "X-ray (low-dose)", "mri": "MRI (accelerated)"}
    _restore("modality", modalities)
    modality = st.sidebar.selectbox("Modality", modalities, key="modality", on_change=_keep, args=("modality",),
                                    format_func=lambda m: labels.get(m, m))
    _keep("modality")
    options = frame[frame.modality == modality].reset_index(drop=True)
    names = {r.config_hash: f"{r.name} · {r.config_hash[:8]} · {r.status}" for r in options.itertuples()}
    _restore("run_key", list(names))
    key = st.sidebar.selectbox("Study run", list(names), format_func=names.get, key="run_key", on_change=_keep,
                               args=("run_key",))
    _keep("run_key")
    return options[options.config_hash == key].iloc[0]


def running_build() -> dict | None:
    """Progress of the build this dashboard (or `make demo`) started, while its process lives."""
    progress = read_progress(paths.progress_path())
    if not progress or progress.get("stage") == "done":
        return None
    try:
        pid = int(progress["pid"])
    except (KeyError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child has ended (a zombie still answers kill 0)
            return None
    except ChildProcessError:
        pass  # started by another process (`make demo`, an earlier server): ask the kernel below
    try:
        os.kill(pid, 0)
    except OSError:
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


def page_run() -> tuple[pd.Series, str]:
    """The sidebar's run for a results page; without any run the page points to Home and stops."""
    run = pick_run(runs())
    if run is None:
        st.info("No results yet. Build the demo study on the Home page, or run `make demo`.")
        st.page_link("pages/home.py", label="Go to Home", icon="🏠")
        st.stop()
    return run, run.config_hash


def reconstructed_cells(key: str) -> pd.DataFrame:
    """A run's finished reconstructed cells; without any the page says so and stops."""
    cells = query("cells", key)
    cells = cells[(cells.status == "done") & (cells.reconstructor != CLEAN)]
    if cells.empty or not query("thresholds", key):
        st.info("No reconstructed cells have landed for this run yet.")
        st.stop()
    return cells


def chart(where, name: str, figure, **kwargs) -> None:
    """A plotly chart (its camera icon saves a PNG) with a download of the same figure as interactive HTML.

    The HTML embeds plotly.js (no network needed to open it) and is only built when clicked.
    """
    where.plotly_chart(figure, **kwargs)
    where.download_button("Interactive HTML", lambda: figure.to_html(include_plotlyjs=True).encode(),
                          f"{name}.html", "text/html", key=f"html_{name}", on_click="ignore",
                          icon=":material/download:", type="tertiary")


class FrozenFigure(go.Figure):
    """A figure never changed after it is built, so its dict form (base64 arrays and all) is made once.

    Streamlit turns a figure into a dict on every rerun that draws it; for the example-image grids
    that conversion is most of a cached page's time.
    """

    _dict: dict | None = None

    def to_dict(self) -> dict:
        if self._dict is None:
            self._dict = super().to_dict()
        return self._dict


@st.cache_resource(show_spinner=False, max_entries=512)
def cached_plot(builder: str, *args, **kwargs) -> FrozenFigure:
    """A figure from recon_core.plots, built once per distinct input and never modified after.

    Building a plotly figure costs 20–200 ms; its inputs here are small filtered tables, so
    hashing them is cheap and an unrelated widget change redraws from the cache. A resource
    cache hands back the same object: unpickling a figure from a data cache re-validates every
    property (≈40 ms a figure).
    """
    return FrozenFigure(getattr(plots, builder)(*args, **kwargs))

