"""The sidebar's shared selection: modality, run, reconstructors, levels, level in focus, subgroup attribute.

The same keys on every results page, restored after a visit to a page that does not draw them,
so a choice made on one page holds on the next. Every picker whose options belong to a run is
keyed by that run (`scoped`), and the run picker by its modality: a picker never shows a value
of another run or modality, and coming back to a run brings back its choices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from pages.ui import data
from recon_core.results import RunView
from recon_core.store import CLEAN
from recon_core.tables import attribute_text

KEPT = "_kept_choices"
"""Session slot that outlives widgets: Streamlit drops a widget's state on a page that does not draw it."""


def scoped(name: str, scope: str) -> str:
    """The widget key of picker `name` for one run (or modality): 'level@0249daec050eee7a'."""
    return f"{name}@{scope}"


def _restore(key: str, options: list, kept_as: str | None = None) -> None:
    """Before drawing a shared widget: set it to the user's last choice on any page, if still valid.

    Widget ids differ between pages, so a value left over from another page would be ignored;
    setting it through the Session State API before the widget is drawn is what carries it over.
    `kept_as` names the choice where the widget's own key changes with its options (the run picker).
    """
    kept = st.session_state.setdefault(KEPT, {})
    name = kept_as or key
    if name in kept:
        value = kept[name]
        if isinstance(value, list):
            st.session_state[key] = [v for v in value if v in options]
        elif value in options:
            st.session_state[key] = value
        else:
            st.session_state.pop(key, None)  # a choice the newly picked run does not hold
    elif key in st.session_state and not isinstance(st.session_state[key], list) \
            and st.session_state[key] not in options:
        del st.session_state[key]


def _keep(key: str, kept_as: str | None = None) -> None:
    """Records a shared widget's value (under `kept_as` where given); also its on_change callback, so a change is
    kept before the rerun."""
    st.session_state.setdefault(KEPT, {})[kept_as or key] = st.session_state[key]


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


@dataclass(frozen=True)
class Choices:
    """The sidebar's shared selection: what every results page shows."""

    reconstructors: list[str]
    levels: list[float]
    level: float
    attribute: str


def sidebar_choices(agg: pd.DataFrame, run: RunView) -> Choices:
    """Sidebar: reconstructors, levels on the curves, the level in focus (the most degraded at first), attribute.

    Reconstructors are offered in the run's own order (the order their colours follow).
    """
    present = set(agg.reconstructor.unique()) - {CLEAN}
    recons = [r for r in run.reconstructors if r in present] + sorted(present - set(run.reconstructors))
    all_levels = run.mildest_first(agg.loc[agg.reconstructor != CLEAN, "level"].unique())
    if not recons:
        st.info("Only the clean baseline has landed so far; reconstructors follow.")
        st.stop()
    chosen = multiselect_growing("Reconstructors", recons, key=scoped("reconstructors", run.key))
    levels = multiselect_growing("Levels on the curves", all_levels, key=scoped("levels", run.key),
                                 format_func=lambda v: f"{v:g}")
    level_key, attribute_key = scoped("level", run.key), scoped("attribute", run.key)
    _restore(level_key, all_levels)
    level = st.sidebar.select_slider("Level in focus", options=all_levels, key=level_key, on_change=_keep,
                                     args=(level_key,), format_func=lambda v: f"{v:g} {run.level.unit}",
                                     **({} if level_key in st.session_state
                                        else {"value": run.worst_level(all_levels)}))
    _keep(level_key)
    attributes = sorted((a for a in agg.attribute.unique() if a not in ("all", "")),
                        key=lambda a: (a != "sex", "×" in a, a))
    _restore(attribute_key, attributes)
    attribute = st.sidebar.selectbox("Subgroups by", attributes, key=attribute_key, format_func=attribute_text,
                                     on_change=_keep, args=(attribute_key,))
    _keep(attribute_key)
    if not chosen or not levels:
        st.warning("Pick at least one reconstructor and one level in the sidebar.")
        st.stop()
    return Choices(chosen, levels, float(level), attribute)


def _default(key: str, options: list, value: object) -> dict:
    """`index=` for a widget's first draw only: Streamlit warns when a default meets a value set in state."""
    return {} if key in st.session_state else {"index": options.index(value)}


def _first_choice(frame: pd.DataFrame) -> pd.Series:
    """The run a fresh session opens on: the newest finished run (an incomplete one, with failed cells, is
    finished too), else the newest (runs come newest first)."""
    done = frame[frame.status.isin(["done", "incomplete"])]
    return (done if len(done) else frame).iloc[0]


def pick_run(frame: pd.DataFrame) -> RunView | None:
    """Sidebar: modality then run (the newest finished at first); the choice is kept across pages."""
    if frame.empty:
        return None
    titles = dict(zip(frame.modality, frame.title, strict=True))
    modalities = sorted(titles)
    _restore("modality", modalities)
    modality = st.sidebar.selectbox("Modality", modalities, key="modality", on_change=_keep, args=("modality",),
                                    format_func=titles.get, **_default("modality", modalities,
                                                                       _first_choice(frame).modality))
    _keep("modality")
    options = frame[frame.modality == modality].reset_index(drop=True)
    names = run_labels(options)
    run_key = scoped("run_key", modality)  # the choice, kept across pages
    widget = picker_key(run_key, names)  # the box: a fresh one whenever the runs offered change
    _restore(widget, list(names), kept_as=run_key)
    key = st.sidebar.selectbox("Study run", list(names), format_func=names.get, key=widget, on_change=_keep,
                               args=(widget, run_key),
                               **_default(widget, list(names), _first_choice(options).config_hash))
    _keep(widget, run_key)
    run = data.run_view(key)
    st.sidebar.caption(run_state(run))
    return run


def run_labels(runs: pd.DataFrame) -> dict[str, str]:
    """The run picker's options, {hash: 'name · hash8'}: labels that never change while a run progresses.

    The status is said under the picker instead (`run_state`), from the very run the page draws.
    """
    return {r.config_hash: f"{r.name} · {r.config_hash[:8]}" for r in runs.itertuples()}


def picker_key(choice: str, labels: dict[str, str]) -> str:
    """The run picker's widget key: its choice's key and a digest of the runs it offers.

    Streamlit's selectbox can keep showing the label it showed last when a rerun changes its options
    under the same key (benchmarks/browser_latency.py reads the list's selected option for that
    reason): with the run's status in its label and runs appearing and finishing during a build,
    the sidebar said 'Study run: demo-mri · running' over an X-ray page. Here a new set of runs is a
    new widget, drawn afresh, and the user's choice is carried over under `choice` (see `_restore`).
    """
    digest = hashlib.sha1("\n".join(f"{k} {v}" for k, v in labels.items()).encode()).hexdigest()[:8]
    return scoped(choice, digest)


def run_state(run: RunView) -> str:
    """'X-ray (low-dose) · running · 4 cells done': the picked run's modality and state, under the picker."""
    return f"{run.title} · {run.status} · {run.cells_done} cells done"


def page_run() -> RunView:
    """The sidebar's run for a results page; without any run the page points to Home and stops."""
    run = pick_run(data.runs())
    if run is None:
        st.info("No results yet. Build the demo study on the Home page, or run `make demo`.")
        st.page_link("pages/home.py", label="Go to Home", icon=":material/home:")
        st.stop()
    return run


def grouped_results() -> tuple[RunView, pd.DataFrame]:
    """The sidebar's run and its stored aggregates for a page of per-group results; without any per-group row yet
    the page says so and stops."""
    run = page_run()
    agg = data.aggregates(run.key)
    if not (agg.attribute != "all").any():
        st.info("This run has no per-group results yet: its cells are still landing.")
        st.stop()
    return run, agg


def reconstructed_cells(key: str) -> pd.DataFrame:
    """A run's finished reconstructed cells; without any the page says so and stops."""
    cells = data.cells(key)
    cells = cells[(cells.status == "done") & (cells.reconstructor != CLEAN)]
    if cells.empty or not data.thresholds(key):
        st.info("No reconstructed cells have landed for this run yet.")
        st.stop()
    return cells
