"""Run: start a study from the browser (a shipped config or one in an allowed folder) and watch it land."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from pages.common import ROOT, ensure_routed, running_build, start_cli_run
from recon_core.cohorts import CohortError
from recon_core.cohorts.csv_xray import read_manifest
from recon_core.config import ConfigError, load_config

ensure_routed("pages/run.py")


def allowed_roots() -> list[Path]:
    """Folders the server may read configs from: configs/ plus $TANDEM_DATA_ROOTS (colon-separated)."""
    extra = [Path(p).expanduser().resolve() for p in os.environ.get("TANDEM_DATA_ROOTS", "").split(":") if p]
    return [(ROOT / "configs").resolve(), *extra]


def check_path(text: str, suffixes: tuple[str, ...] | None = (".yaml", ".yml")) -> Path:
    """A path inside an allowed folder (and with one of `suffixes`); anything else is refused unread."""
    path = Path(text).expanduser()
    path = (ROOT / path if not path.is_absolute() else path).resolve()
    if not any(path.is_relative_to(root) for root in allowed_roots()):
        raise ConfigError(f"{path} is outside the folders this server may read "
                          f"({', '.join(map(str, allowed_roots()))}); set TANDEM_DATA_ROOTS to allow another")
    if suffixes is not None and path.suffix not in suffixes:
        raise ConfigError(f"{path}: a study config is a .yaml file")
    return path


@st.fragment(run_every=2.0)
def progress_panel() -> None:
    progress = running_build()
    if progress is None:
        if st.session_state.pop("run_seen", False):
            st.rerun()
        return
    st.session_state["run_seen"] = True
    total = max(int(progress["total"]), 1)
    st.progress(min(int(progress["done"]) / total, 1.0),
                text=f"Running: {progress['stage']} ({progress['done']}/{progress['total']}) — other pages "
                     "stay usable and fill in as cells land")


st.title("Run a study")
shipped = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
source = st.radio("Config", ["shipped", "path"], horizontal=True, key="run_source",
                  format_func={"shipped": "A shipped config", "path": "A YAML file in an allowed folder"}.get)
if source == "shipped":
    default = shipped.index("demo.yaml") if "demo.yaml" in shipped else 0
    choice = st.selectbox("Shipped config", shipped, index=default, key="run_config")
    text = f"configs/{choice}"
else:
    text = st.text_input("Config path", key="run_path", placeholder="/data/my-study.yaml")
st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in allowed_roots()))

config = None
if text:
    try:
        path = check_path(text)
        config = load_config(path)
    except ConfigError as exc:
        st.error(f"This config cannot run: {exc}")
if config is not None and config.cohort.source == "csv":
    for folder in (config.cohort.csv.csv_path, config.cohort.csv.image_root):
        try:
            check_path(folder, suffixes=None)
        except ConfigError as exc:
            st.error(f"This dataset cannot be read: {exc}")
            config = None
            break
    if config is not None:
        try:
            subjects = read_manifest(config.cohort, config.seed)
            st.info(f"Dataset manifest checked: {len(subjects)} images, "
                    + ", ".join(f"{k} {v}" for k, v in subjects.sex.value_counts().items())
                    + f"; splits {dict(subjects.split.value_counts())}.")
        except CohortError as exc:
            st.error(f"This dataset cannot run: {exc}")
            config = None
if config is not None:
    levels = ", ".join(f"{v:g}" for v in config.physics.levels)
    st.success(f"**{config.name}** ({config.config_hash()}): {config.cohort.n_subjects} subjects at "
               f"{config.cohort.image_size} px from a {config.cohort.source} cohort; reconstructors "
               f"{', '.join(config.reconstructors.names)} at levels {levels}. Finished cells are reused.")
    busy = running_build() is not None
    if st.button("Start", type="primary", disabled=busy, key="run_start"):
        start_cli_run("sweep", path)
        st.rerun()
    if busy:
        st.caption("A build is running; start another when it ends.")
progress_panel()
