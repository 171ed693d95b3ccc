"""Home: what the store holds; builds the demo study from the browser when it is empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import streamlit as st

from pages.common import ensure_routed, runs, store
from recon_core import paths
from recon_core.progress import read_progress, write_progress

ROOT = Path(__file__).resolve().parent.parent
ensure_routed("pages/home.py")


def _build_running() -> dict | None:
    """The progress of a demo build still running, if any."""
    progress = read_progress(paths.progress_path())
    if not progress or progress.get("stage") == "done":
        return None
    try:
        os.kill(int(progress["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return progress


def _start_build() -> None:
    """Starts `python -m recon_core demo` as its own process: the dashboard stays responsive."""
    log = paths.cache_dir() / "demo-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-m", "recon_core", "demo", "--store", str(store().path),
                                  "--progress-file", str(paths.progress_path())],
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # Recorded at once, so the rerun below already sees a build running (no second click).
    write_progress(paths.progress_path(), "starting", 0, 1, pid=child.pid)


def build_status() -> None:
    """Live progress of a running build, and the stored runs; reruns the page when the build ends."""
    progress = _build_running()
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

running = _build_running()
if runs().empty:
    st.info("The store is empty. Build the demo study: a generated chest X-ray cohort (2,000 subjects, "
            "128 px), five dose levels, three reconstructors. It takes a few minutes on a laptop CPU; "
            "curves appear on **Overview** as each cell lands.")
if running is None:
    if st.button("Build the demo study", type="primary"):
        _start_build()
        st.rerun()
    log = paths.cache_dir() / "demo-build.log"
    if log.exists() and "error" in log.read_text()[-2000:].lower():
        with st.expander("The last build from this page failed — its log", expanded=False):
            st.code(log.read_text()[-4000:])
# Poll only while a build runs; otherwise draw once.
st.fragment(build_status, run_every=2.0 if running is not None else None)()
