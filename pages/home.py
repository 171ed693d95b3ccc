"""Home: what the store holds; builds the demo study from the browser when it is empty."""

from __future__ import annotations

import streamlit as st

from pages.common import ensure_routed, running_build, runs, start_cli_run
from recon_core import paths

ensure_routed("pages/home.py")


def build_status() -> None:
    """Live progress of a running build, and the stored runs; reruns the page when the build ends."""
    progress = running_build()
    if progress is not None:
        st.session_state["build_seen"] = True
        total = max(int(progress["total"]), 1)
        st.progress(min(int(progress["done"]) / total, 1.0),
                    text=f"Building: {progress['stage']} ({progress['done']}/{progress['total']})")
    elif st.session_state.pop("build_seen", False):
        st.rerun()  # the build ended: redraw the whole page with its results
    table = runs()
    if table.empty:
        return
    st.subheader("Stored runs")
    shown = table[["name", "modality", "status", "cells_done", "level_name", "created_at", "seconds", "message",
                   "config_hash"]].rename(columns={"cells_done": "cells done", "level_name": "level"})
    st.dataframe(shown, hide_index=True, width="stretch")
    st.page_link("pages/overview.py", label="Open the Overview", icon="📈")


st.title("Tandem")
st.markdown(
    "Judges **reconstruction** models by what matters clinically: each test image is degraded "
    "(low-dose X-ray noise), reconstructed, and handed to a diagnostic model. Image quality "
    "(PSNR, SSIM), task performance (AUROC) and **fairness across sex and age** are measured "
    "with bootstrap confidence intervals as noise rises, and every change is compared with the "
    "same diagnostic model on the clean images, so bias the reconstruction *adds* is separated "
    "from bias the diagnostic model already has.")

running = running_build()
if runs().empty:
    st.info("The store is empty. Build the demo study: a generated chest X-ray cohort (2,000 subjects, "
            "128 px), five dose levels, three reconstructors. It takes a few minutes on a laptop CPU; "
            "curves appear on **Overview** as each cell lands.")
if running is None:
    if st.button("Build the demo study", type="primary"):
        start_cli_run("demo")
        st.rerun()
    log = paths.cache_dir() / "build.log"
    if log.exists() and "error" in log.read_text()[-2000:].lower():
        with st.expander("The last build from this page failed — its log", expanded=False):
            st.code(log.read_text()[-4000:])
# Poll only while a build runs; otherwise draw once.
st.fragment(build_status, run_every=2.0 if running is not None else None)()
