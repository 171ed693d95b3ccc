"""Figures on the pages: built once per input from recon_core.plots, each with an interactive-HTML download."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from recon_core import plots


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
