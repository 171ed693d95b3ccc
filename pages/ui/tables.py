"""A page's table: human column names and a one-line help on every header that has one (recon_core.tables)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from recon_core import tables


def show(frame: pd.DataFrame | Styler, where: Any = st, column_config: dict | None = None, **kwargs: Any) -> Any:
    """`where.dataframe(frame)` with stored ids renamed (`tables.human`) and each known header's help on hover.

    A column the caller configured keeps its settings and gains the help; a Styler keeps its columns.
    """
    if not isinstance(frame, Styler):
        frame = tables.shown(frame)
    columns = frame.data.columns if isinstance(frame, Styler) else frame.columns
    config = dict(column_config or {})
    for column, text in tables.column_help(columns).items():
        entry = config.get(column)
        if entry is None:
            config[column] = st.column_config.Column(help=text)
        elif isinstance(entry, dict) and not entry.get("help"):
            config[column] = {**entry, "help": text}
    return where.dataframe(frame, column_config=config, **kwargs)
