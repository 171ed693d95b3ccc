"""Tandem dashboard: routes the pages; every page reads the store through recon_core."""

import streamlit as st

from pages.ui.routing import ROUTED, WANTED

st.set_page_config(page_title="Tandem — reconstruction judged by diagnosis", page_icon="🩻", layout="wide")

st.session_state[ROUTED] = True
navigation = st.navigation([
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/overview.py", title="Overview", icon="📈"),
    st.Page("pages/fairness.py", title="Fairness", icon="⚖️"),
    st.Page("pages/mitigation.py", title="Mitigation", icon="🩹"),
    st.Page("pages/compare.py", title="Compare", icon="🔬"),
    st.Page("pages/failures.py", title="Failure cases", icon="🔍"),
    st.Page("pages/posterior.py", title="Uncertainty & hallucinations", icon="🎲"),
    st.Page("pages/run.py", title="Run", icon="▶️"),
])
wanted = st.session_state.pop(WANTED, None)
if wanted:  # a page that was first opened outside app.py (see pages.ui.routing.ensure_routed)
    st.switch_page(wanted)
navigation.run()
