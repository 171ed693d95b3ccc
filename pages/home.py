"""Home: what the store holds; builds the demo study from the browser when it is empty."""

from __future__ import annotations

import streamlit as st

from pages.ui import data
from pages.ui.routing import ensure_routed
from pages.ui.tables import show
from recon_core import builds, paths

ensure_routed("pages/home.py")


def build_status() -> None:
    """Live progress of a running build, and the stored runs; reruns the page when the build ends."""
    progress = builds.running_build(paths.progress_path())
    if progress is not None:
        st.session_state["build_seen"] = True
        st.progress(progress.fraction, text=progress.text())
    elif st.session_state.pop("build_seen", False):
        st.rerun()  # the build ended: redraw the whole page with its results
    table = data.runs()
    if table.empty:
        return
    st.subheader("Stored runs")
    shown = table[["name", "title", "status", "cells_done", "level_name", "created_at", "seconds", "message",
                   "config_hash"]].rename(columns={"title": "modality", "cells_done": "cells done",
                                                   "level_name": "level"})
    # a value a run does not have yet (its message, the seconds of a running build) shows nothing, not "None"
    shown = shown.assign(message=shown.message.fillna(""),
                         seconds=["" if v is None or v != v else f"{v:.0f}" for v in shown.seconds])
    show(shown, hide_index=True, width="stretch")
    st.page_link("pages/overview.py", label="Open the Overview", icon=":material/monitoring:")


st.title("Tandem")
st.markdown(
    "Judges **reconstruction** models by what matters clinically. Each test image is degraded (low-dose "
    "**X-ray** noise, or **MRI** k-space undersampling), reconstructed, and handed to the diagnostic models (an "
    "X-ray finding classifier; an MRI tumour segmenter and grade classifier). Every reconstructor of a study runs "
    "in tandem with them: the built-in ones (none or zero-filled, total variation, U-Net, pix2pix GAN, "
    "conditional diffusion) and **your own** (a TorchScript file, a Python entry point or a MONAI bundle, added "
    "on the **Run** page or in a config).\n\n"
    "Image quality (PSNR, SSIM), task performance (AUROC, Dice) and **fairness across sex and age** are measured "
    "with bootstrap confidence intervals at every level, and every change is compared with the same diagnostic "
    "models on the clean images, so bias a reconstruction *adds* is separated from bias the diagnostic model "
    "already has. **Overview** says what a study found, in words, before its charts; **Fairness** tests each "
    "added subgroup difference with corrected q-values; **Failure cases** and **Compare** show the images behind "
    "the numbers; **Uncertainty & hallucinations** judges a sampler's spread and counts erased and invented "
    "lesions. Mitigation (fine-tuning a reconstructor to add less bias) is coming.")

running = builds.running_build(paths.progress_path())
if data.runs().empty:
    st.info("The store is empty. Build the demo study: a generated chest X-ray cohort (2,000 subjects, "
            "128 px), five dose levels, five reconstructors (none, TV, U-Net, GAN, diffusion). It takes "
            "about a quarter of an hour on a laptop CPU; curves appear on **Overview** as each cell lands.")
if running is None:
    if st.button("Build the demo study", type="primary"):
        builds.start_build("demo", data.store().path, paths.progress_path(), paths.build_log())
        st.rerun()
    failure = builds.failed_log(paths.build_log())
    if failure:
        with st.expander("The last build from this page failed — its log", expanded=False):
            st.code(failure)
# Poll only while a build runs; otherwise draw once.
st.fragment(build_status, run_every=2.0 if running is not None else None)()
