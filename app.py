"""Tandem dashboard: routes the pages; every page reads the store through recon_core."""

import streamlit as st

from pages.ui.routing import ROUTED, WANTED

st.set_page_config(page_title="Tandem — reconstruction judged by diagnosis", page_icon=":material/biotech:",
                   layout="wide")

st.session_state[ROUTED] = True
navigation = st.navigation([
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:"),
    st.Page("pages/fairness.py", title="Fairness", icon=":material/balance:"),
    st.Page("pages/discovery.py", title="Weak subgroups", icon=":material/manage_search:"),
    st.Page("pages/mitigation.py", title="Mitigation", icon=":material/healing:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/failures.py", title="Failure cases", icon=":material/troubleshoot:"),
    st.Page("pages/posterior.py", title="Uncertainty & hallucinations", icon=":material/blur_on:"),
    st.Page("pages/run.py", title="Run", icon=":material/play_arrow:"),
])
wanted = st.session_state.pop(WANTED, None)
if wanted:  # a page that was first opened outside app.py (see pages.ui.routing.ensure_routed)
    st.switch_page(wanted)
navigation.run()
