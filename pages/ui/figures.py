"""Figures on the pages: built once per input from recon_core.plots, each with a slide-ready PNG and an
interactive-HTML download."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from pages.ui import data
from recon_core import exports, plots
from recon_core.results import RunView


def chart(where, name: str, figure, run: RunView | None = None, size: tuple[int, int, float] = plots.CHART_SIZE,
          title: str = "", **kwargs) -> None:
    """A plotly chart whose camera icon saves a PNG of `size` (1920×1080 pixels by default) with the chart's title,
    axis titles, the interval note and `run`'s name, and a download of the same figure as interactive HTML.

    `title` names a figure drawn without one (an image grid) on its PNG, say what the section's header says.
    The note is drawn on the page too (a PNG is what the page shows); the noted copy of a cached figure is
    made once. The HTML embeds plotly.js (no network needed to open it) and is only built when clicked.
    """
    stem = name
    if run is not None:
        stem = exports.file_stem(run, name)
        if getattr(figure, "builder", "") != "slides_figure":  # the slides figure carries its note already
            note = exports.note(run, getattr(figure, "builder", ""), data.ci_level(run.key))
            figure = figure.captioned(note, title) if isinstance(figure, FrozenFigure) else plots.captioned(
                figure, note, title)
    where.plotly_chart(figure, config=exports.png_options(stem, size), **kwargs)
    where.download_button("Interactive HTML", lambda: figure.to_html(include_plotlyjs=True).encode(),
                          f"{stem}.html", "text/html", key=f"html_{name}", on_click="ignore",
                          icon=":material/download:", type="tertiary",
                          help=f"The camera icon above the chart saves a {exports.size_text(size)} for slides.")


class FrozenFigure(go.Figure):
    """A figure never changed after it is built, so its dict form (base64 arrays and all) is made once.

    Streamlit turns a figure into a dict on every rerun that draws it; for the example-image grids
    that conversion is most of a cached page's time.
    """

    _dict: dict | None = None
    builder: str = ""
    """The recon_core.plots builder that made it (names how its intervals are drawn)."""
    _captioned: dict[tuple[str, str], FrozenFigure] | None = None

    def to_dict(self) -> dict:
        if self._dict is None:
            self._dict = super().to_dict()
        return self._dict

    def captioned(self, note: str, title: str) -> FrozenFigure:
        """This figure with `note` under its title (`plots.captioned`), made once per note and kept with it."""
        if self._captioned is None:
            self._captioned = {}
        if (note, title) not in self._captioned:
            copy = FrozenFigure(plots.captioned(self, note, title))
            copy.builder = self.builder
            self._captioned[(note, title)] = copy
        return self._captioned[(note, title)]


@st.cache_resource(show_spinner=False, max_entries=512)
def cached_plot(builder: str, *args, **kwargs) -> FrozenFigure:
    """A figure from recon_core.plots, built once per distinct input and never modified after.

    Building a plotly figure costs 20–200 ms; its inputs here are small filtered tables, so
    hashing them is cheap and an unrelated widget change redraws from the cache. A resource
    cache hands back the same object: unpickling a figure from a data cache re-validates every
    property (≈40 ms a figure).
    """
    figure = FrozenFigure(getattr(plots, builder)(*args, **kwargs))
    figure.builder = builder
    return figure
