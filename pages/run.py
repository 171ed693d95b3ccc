"""Run: start a study from the browser (shipped config, YAML or dataset folder in an allowed place)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from pages.ui import data
from pages.ui.routing import ensure_routed
from recon_core import builds, paths
from recon_core.cohorts import CohortError
from recon_core.cohorts.csv_xray import decode_all, read_manifest
from recon_core.config import ConfigError, CsvSourceConfig, StudyConfig
from recon_core.config_loader import from_dict, load_config
from recon_core.confinement import OutsideRootsError, confine, extra_roots
from recon_core.runner import prepare

ensure_routed("pages/run.py")
ROOT = builds.ROOT


def allowed_roots() -> list[Path]:
    """Folders the server may read configs from: configs/ plus $TANDEM_DATA_ROOTS (colon-separated)."""
    return [(ROOT / "configs").resolve(), *extra_roots()]


def check_path(text: str, suffixes: tuple[str, ...] | None = (".yaml", ".yml")) -> Path:
    """A path resolved inside an allowed folder (and with one of `suffixes`); anything else is refused unread."""
    try:
        path = confine(text, allowed_roots(), base=ROOT)
    except OutsideRootsError as exc:
        raise ConfigError(str(exc)) from None
    if suffixes is not None and path.suffix not in suffixes:
        raise ConfigError(f"{path}: a study config is a .yaml file")
    return path


@st.fragment(run_every=2.0)
def progress_panel() -> None:
    progress = builds.running_build(paths.progress_path())
    if progress is None:
        if st.session_state.pop("run_seen", False):
            st.rerun()
        return
    st.session_state["run_seen"] = True
    st.progress(progress.fraction, text=progress.text("Running") + " — other pages stay usable and fill in as "
                                                                   "cells land")


def inside(relative: str, folder: Path) -> bool:
    """Whether `relative` resolves (symlinks followed) inside `folder`."""
    try:
        confine(relative, [folder], base=folder)
    except OutsideRootsError:
        return False
    return True


def dataset_form() -> tuple[StudyConfig | None, Path | None]:
    """A CheXpert-style dataset folder described in the browser: its CSV, columns and labels, no YAML.

    The study's training and evaluation settings come from a shipped config; the generated config
    is written next to the store when the run starts, so it can be rerun from the command line.
    """
    folder_text = st.text_input("Dataset folder", key="run_dataset", placeholder="/data/chexpert-small")
    if not folder_text:
        return None, None
    try:
        folder = check_path(folder_text, suffixes=None)
    except ConfigError as exc:
        st.error(f"This dataset cannot be read: {exc}")
        return None, None
    if not folder.is_dir():
        st.error(f"{folder}: no such folder")
        return None, None
    # A CSV or subfolder linked from elsewhere is neither read nor listed into.
    subfolders = [d for d in folder.iterdir() if d.is_dir() and inside(d.name, folder)]
    found = [str(p.relative_to(folder)) for p in [*folder.glob("*.csv"), *(f for d in subfolders
                                                                           for f in d.glob("*.csv"))]]
    tables = sorted(t for t in found if inside(t, folder) and (folder / t).is_file())  # not a folder or FIFO
    if len(tables) < len(found):
        st.caption(f"{len(found) - len(tables)} entries named *.csv were left out: links leading outside this "
                   "folder, or not plain files.")
    if not tables:
        st.error(f"{folder}: no CSV file here or one level down; the manifest is a CSV with one row per image")
        return None, None
    c1, c2 = st.columns(2)
    table_name = c1.selectbox("Manifest CSV", tables, key="run_csv")
    base_name = c2.selectbox("Settings from", shipped, index=shipped.index("demo.yaml") if "demo.yaml" in shipped
                             else 0, key="run_base", help="Training, physics and evaluation settings are taken "
                             "from this shipped config; the cohort is your dataset.")
    try:
        header = list(pd.read_csv(folder / table_name, nrows=0).columns)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        st.error(f"{folder / table_name}: not a readable CSV ({exc})")
        return None, None

    def column(label: str, guess: str, key: str, optional: bool = False) -> str | None:
        options = ([None] if optional else []) + header
        index = options.index(guess) if guess in options else 0
        return st.selectbox(label, options, index=index, key=key, format_func=lambda c: "— none —" if c is None else c)

    c1, c2, c3, c4, c5 = st.columns(5)
    with c1:
        path_column = column("Image path column", "Path", "run_col_path")
    with c2:
        sex_column = column("Sex column", "Sex", "run_col_sex")
    with c3:
        age_column = column("Age column", "Age", "run_col_age")
    with c4:
        subject_column = column("Patient id column", "subject_id", "run_col_subject", optional=True)
    with c5:
        split_column = column("Split column", "split", "run_col_split", optional=True)
    defaults = [c for c in CsvSourceConfig.__dataclass_fields__["labels"].default if c in header]
    labels = st.multiselect("Finding label columns (1 present, 0 or blank absent, −1 uncertain)", header,
                            default=defaults, key="run_labels")
    if not labels:
        st.error("Pick at least one finding label column.")
        return None, None
    base = load_config(ROOT / "configs" / base_name).to_dict()
    base["name"] = f"{folder.name}-xray"
    base["cohort"].update(source="csv", csv=dict(
        csv_path=str(folder / table_name), image_root=str(folder), path_column=path_column, sex_column=sex_column,
        age_column=age_column, subject_column=subject_column, split_column=split_column, labels=labels))
    base["cohort"].pop("bias", None)  # bias knobs only exist for generated cohorts
    try:
        config = from_dict(base)
    except ConfigError as exc:
        st.error(f"These settings cannot run: {exc}")
        return None, None
    target = paths.cache_dir() / "configs" / f"{config.name}-{config.config_hash()}.yaml"
    return config, target


st.title("Run a study")
shipped = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
source = st.radio("Config", ["shipped", "path", "dataset"], horizontal=True, key="run_source",
                  format_func={"shipped": "A shipped config", "path": "A YAML file in an allowed folder",
                               "dataset": "A dataset folder (no YAML needed)"}.get)
config, path = None, None
if source == "dataset":
    config, path = dataset_form()
else:
    if source == "shipped":
        default = shipped.index("demo.yaml") if "demo.yaml" in shipped else 0
        choice = st.selectbox("Shipped config", shipped, index=default, key="run_config")
        text = f"configs/{choice}"
    else:
        text = st.text_input("Config path", key="run_path", placeholder="/data/my-study.yaml")
    if text:
        try:
            path = check_path(text)
            config = load_config(path)
        except ConfigError as exc:
            st.error(f"This config cannot run: {exc}")
st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in allowed_roots()))

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
            if st.button(f"Decode every image now ({len(subjects)})", key="run_decode",
                         help="Opens each image as the sweep will, so a damaged file is found before training."):
                bar = st.progress(0.0, text="decoding images")
                decoded = decode_all(config.cohort, config.seed, lambda stage, done, total: bar.progress(
                    done / total, text=f"{stage} {done}/{total}"))
                st.success(f"All {decoded} images decode.")
        except CohortError as exc:
            st.error(f"This dataset cannot run: {exc}")
            config = None
if config is not None:
    try:
        config = prepare(config)  # a dataset's content fingerprint: changed data is a new run, never a reused one
    except CohortError as exc:
        st.error(f"This dataset cannot run: {exc}")
        config = None
if config is not None:
    levels = ", ".join(f"{v:g}" for v in config.physics.levels)
    st.success(f"**{config.name}** ({config.config_hash()}): {config.cohort.n_subjects} subjects at "
               f"{config.cohort.image_size} px from a {config.cohort.source} cohort; reconstructors "
               f"{', '.join(config.reconstructors.names)} at levels {levels}. Finished cells are reused.")
    busy = builds.running_build(paths.progress_path()) is not None
    stored = data.runs()
    done = bool((stored[stored.config_hash == config.config_hash()].status == "done").any())
    if done:
        st.info("This config's run is finished: its results are on Overview. Change the config to run another "
                "study (a changed level, reconstructor or setting is a new run).")
        st.page_link("pages/overview.py", label="Open the Overview", icon="📈")
    if st.button("Start", type="primary", disabled=busy or done, key="run_start"):
        if not path.exists():  # a dataset described on this page: its config is written where the run can read it
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        builds.start_build("sweep", data.store().path, paths.progress_path(), paths.build_log(), path)
        st.rerun()
    if busy:
        st.caption("A build is running; start another when it ends.")
progress_panel()
