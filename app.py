"""Tandem dashboard: routes the pages; every page reads the store through recon_core."""

import streamlit as st

st.set_page_config(page_title="Tandem — reconstruction judged by diagnosis", page_icon="🩻", layout="wide")

navigation = st.navigation([
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/overview.py", title="Overview", icon="📈"),
])
navigation.run()
