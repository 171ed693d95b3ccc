"""Routing: every page runs under app.py's st.navigation, even when its URL is the first thing a server sees."""

from __future__ import annotations

import streamlit as st

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
