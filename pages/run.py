"""Run: start a study from the browser (shipped config, YAML or dataset folder in an allowed place).

Any of them can take the user's own reconstructors (TorchScript files in an allowed place): they
join the config's `reconstructors.user` and `names`, and the changed config is written next to
the store when the run starts, so it can be rerun from the command line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import torch
import yaml

from pages.ui import data
from pages.ui.routing import ensure_routed
from pages.ui.tables import show
from recon_core import builds, paths, results
from recon_core.cohorts import CohortError
from recon_core.cohorts.csv_xray import decode_all, read_manifest
from recon_core.config import ConfigError, CsvSourceConfig, StudyConfig, UserReconstructorConfig
from recon_core.config_loader import from_dict, load_config
from recon_core.confinement import OutsideRootsError, confine, extra_roots
from recon_core.modalities import get_modality
from recon_core.models.user_models import UserModelError, load_model
from recon_core.reconstructors import available
from recon_core.reconstructors.user import checked_output
from recon_core.runner import prepare
from recon_core.runner.model_cards import model_cards

ensure_routed("pages/run.py")
ROOT = builds.ROOT


def allowed_roots() -> list[Path]:
    """Folders the server may read configs from: configs/ plus $TANDEM_DATA_ROOTS (colon-separated)."""
    return [(ROOT / "configs").resolve(), *extra_roots()]


def check_path(text: str, suffixes: tuple[str, ...] | None = (".yaml", ".yml"), what: str = "a study config") -> Path:
    """A path resolved inside an allowed folder (and with one of `suffixes`); anything else is refused unread."""
    try:
        path = confine(text, allowed_roots(), base=ROOT)
    except OutsideRootsError as exc:
        raise ConfigError(str(exc)) from None
    if suffixes is not None and path.suffix not in suffixes:
        raise ConfigError(f"{path}: {what} is a {' or '.join(suffixes)} file")
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


def dataset_form() -> StudyConfig | None:
    """A CheXpert-style dataset folder described in the browser: its CSV, columns and labels, no YAML.

    The study's training and evaluation settings come from a shipped config; the generated config
    is written next to the store when the run starts, so it can be rerun from the command line.
    """
    folder_text = st.text_input("Dataset folder", key="run_dataset", placeholder="/data/chexpert-small")
    if not folder_text:
        return None
    try:
        folder = check_path(folder_text, suffixes=None)
    except ConfigError as exc:
        st.error(f"This dataset cannot be read: {exc}")
        return None
    if not folder.is_dir():
        st.error(f"{folder}: no such folder")
        return None
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
        return None
    c1, c2 = st.columns(2)
    table_name = c1.selectbox("Manifest CSV", tables, key="run_csv")
    base_name = c2.selectbox("Settings from", shipped, index=shipped.index("demo.yaml") if "demo.yaml" in shipped
                             else 0, key="run_base", help="Training, physics and evaluation settings are taken "
                             "from this shipped config; the cohort is your dataset.")
    try:
        header = list(pd.read_csv(folder / table_name, nrows=0).columns)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        st.error(f"{folder / table_name}: not a readable CSV ({exc})")
        return None

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
        return None
    base = load_config(ROOT / "configs" / base_name).to_dict()
    base["name"] = f"{folder.name}-xray"
    base["cohort"].update(source="csv", csv=dict(
        csv_path=str(folder / table_name), image_root=str(folder), path_column=path_column, sex_column=sex_column,
        age_column=age_column, subject_column=subject_column, split_column=split_column, labels=labels))
    base["cohort"].pop("bias", None)  # bias knobs only exist for generated cohorts
    try:
        return from_dict(base)
    except ConfigError as exc:
        st.error(f"These settings cannot run: {exc}")
        return None


# (comments, not docstrings: Streamlit would draw a bare string on the page)
MODEL_SUFFIXES = (".pt", ".ts", ".pth")  # a TorchScript file's usual names (torch.jit.save writes any)
USER_MODELS = "run_user_models"  # session slot: the models added here, each {'user': its config entry, 'note': str}
OTHER_FILE = "another path…"


@st.cache_data(ttl=15, show_spinner=False)
def model_files(roots: tuple[Path, ...], shown: int = 200) -> list[str]:
    """Model files (*.pt, *.ts, *.pth) in the allowed folders and one level down; links leading out are left out.

    Cached for a few seconds: a data folder may be large, and the page reruns on every widget change.
    """
    found: set[Path] = set()
    for root in roots:
        try:
            for folder in [root, *(d for d in root.iterdir() if inside(d.name, root) and d.is_dir())]:
                found |= {f for f in folder.iterdir() if f.suffix in MODEL_SUFFIXES
                          and inside(str(f.relative_to(root)), root) and f.is_file()}
        except OSError:  # a root that is not a readable folder offers nothing
            continue
    return sorted(str(f) for f in found)[:shown]


def model_note(user: UserReconstructorConfig, study_size: int) -> str:
    """'' when a mid-grey batch of the declared size passes the model's contract, else what went wrong.

    Loads the file through torch.jit.load (never pickle): one that is no TorchScript raises
    UserModelError, and is not added. A model taking k-space as well is only loaded.
    """
    what = f"reconstructor {user.name!r}"
    model = load_model(user.source, Path(user.path), "", torch.device("cpu"), what)
    if user.inputs != "image":
        return ""
    low, high = user.value_range
    size = user.image_size or study_size
    images = torch.full((2, 1, size, size), low + 0.5 * (high - low))
    try:
        with torch.no_grad():
            checked_output(model(images), tuple(images.shape), user.value_range, user.range_tolerance,
                           f"{what} on a mid-grey test batch")
    except UserModelError as exc:
        return str(exc)
    except Exception as exc:  # whatever the user's model raises is reported in its own words
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return f"{what} on a mid-grey test batch of {list(images.shape)}: raised {type(exc).__name__}: {first}"
    return ""


def with_user_models(config: StudyConfig, added: list[dict]) -> StudyConfig:
    """The config with the added reconstructors in `reconstructors.user` and `names`, validated again (ConfigError)."""
    if not added:
        return config
    spec = config.to_dict()
    recons = spec["reconstructors"]
    recons["user"] = [*recons.get("user", []), *(a["user"] for a in added)]
    recons["names"] = [*recons["names"], *(a["user"]["name"] for a in added)]
    return from_dict(spec)


def add_user_model(config: StudyConfig, added: list[dict]) -> None:
    """The form that adds a TorchScript reconstructor: file (inside the allowed folders), name and contract.

    Adding checks the name, the config it makes and the file (loaded, and tried on a mid-grey batch);
    a problem is shown here and nothing is added, except a failed try, which is noted: its cells fail
    on the run and show as failed, the others go on.
    """
    files = model_files(tuple(allowed_roots()))
    choice = st.selectbox("Model file", [*files, OTHER_FILE], key="run_user_file",
                          help="TorchScript files (*.pt, *.ts, *.pth) in the allowed folders and one level down.")
    text = st.text_input("Model path", key="run_user_path", placeholder="/data/models/my-model.pt") \
        if choice == OTHER_FILE else choice
    stem = Path(text).stem if text else ""
    default = "".join(c if c.isalnum() or c in "_-+" else "_" for c in stem)
    name = st.text_input("Name", key="run_user_name", placeholder=default or "my-model",
                         help="How the curves and tables name it; empty: the file's name.") or default
    c1, c2, c3 = st.columns(3)
    low = c1.number_input("Lowest value it takes and returns", value=0.0, key="run_user_low")
    high = c2.number_input("Highest value it takes and returns", value=1.0, key="run_user_high")
    size = c3.number_input("Image size it takes (0: the study's)", min_value=0, max_value=1024, value=0, step=1,
                           key="run_user_size", help="Other sizes are resampled to it and back.")
    inputs = "image"
    if get_modality(config.modality).build_physics(config).measures_kspace:
        inputs = st.radio("It takes", ["image", "image+kspace"], horizontal=True, key="run_user_inputs",
                          format_func={"image": "the zero-filled image",
                                       "image+kspace": "the image, the measured k-space and the mask"}.get)
    if not st.button("Add to the study", key="run_user_add"):
        return
    try:
        if not text:
            raise ConfigError("name the model's file")
        path = check_path(text, suffixes=MODEL_SUFFIXES, what="a TorchScript model")
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        if name in available():
            raise ConfigError(f"{name!r} is a built-in reconstructor; give yours another name")
        if name in config.reconstructors.names or name in (a["user"]["name"] for a in added):
            raise ConfigError(f"{name!r} is already a reconstructor of this study; give yours another name")
        user = dict(name=name, source="torchscript", path=str(path), value_range=[float(low), float(high)],
                    image_size=int(size), inputs=inputs)
        declared = with_user_models(config, [*added, {"user": user}]).reconstructors.declared(name)
        note = model_note(declared, config.cohort.image_size)
    except (ConfigError, UserModelError) as exc:
        st.error(f"This model cannot be added: {exc}")
        return
    added.append({"user": user, "note": note})
    st.rerun()


def user_models_section(config: StudyConfig) -> StudyConfig | None:
    """The "Your reconstructor" section: the models added so far (each removable), the form adding one, and the
    config with them; None (and the reason shown) when they cannot run in this study."""
    added = st.session_state.setdefault(USER_MODELS, [])
    with st.expander("Your reconstructor (a TorchScript file)", expanded=bool(added)):
        for i, entry in enumerate(added):
            user = entry["user"]
            c1, c2 = st.columns([5, 1])
            (low, high), size = user["value_range"], user["image_size"] or "the study's"
            c1.markdown(f"**{user['name']}** · `{user['path']}` · values [{low:g}, {high:g}] · size {size} · "
                        f"takes {user['inputs']}")
            if entry["note"]:
                c1.warning(f"{entry['note']}. Its cells will fail and show as failed; the others run.")
            c2.button("Remove", key=f"run_user_remove_{i}", on_click=added.pop, args=(i,))
        add_user_model(config, added)
    try:
        return with_user_models(config, added)
    except ConfigError as exc:
        st.error(f"Your reconstructors cannot run in this study: {exc}")
        return None


st.title("Run a study")
shipped = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
source = st.radio("Config", ["shipped", "path", "dataset"], horizontal=True, key="run_source",
                  format_func={"shipped": "A shipped config", "path": "A YAML file in an allowed folder",
                               "dataset": "A dataset folder (no YAML needed)"}.get)
config, path = None, None
if source == "dataset":
    config = dataset_form()
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
if config is not None:
    config = user_models_section(config)

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
    except UserModelError as exc:  # a model file gone or unreadable since it was added
        st.error(f"This study's models cannot be read: {exc}")
        config = None
if config is not None:
    levels = ", ".join(f"{v:g}" for v in config.physics.levels)
    st.success(f"**{config.name}** ({config.config_hash()}): {config.cohort.n_subjects} subjects at "
               f"{config.cohort.image_size} px from a {config.cohort.source} cohort; reconstructors "
               f"{', '.join(config.reconstructors.names)} at levels {levels}. Finished cells are reused.")
    cards = model_cards(config)
    if len(cards):
        st.caption("Models from outside Tandem in this study (their SHA-256 is part of the run's key: a changed "
                   "file is a new run)")
        show(results.model_card_rows(cards, sha_chars=64), hide_index=True, width="stretch")
    busy = builds.running_build(paths.progress_path()) is not None
    stored = data.runs()
    status = set(stored[stored.config_hash == config.config_hash()].status)
    done = "done" in status
    if done:
        st.info("This config's run is finished: its results are on Overview. Change the config to run another "
                "study (a changed level, reconstructor or setting is a new run).")
        st.page_link("pages/overview.py", label="Open the Overview", icon=":material/monitoring:")
    elif "incomplete" in status:
        st.warning(f"This config's run is incomplete: {len(data.failed_cells(config.config_hash()))} cell(s) "
                   "failed (listed on Overview). Start runs them again; the finished cells are kept.")
    executor = st.radio("Executor", ["local", "ray"], horizontal=True, key="run_executor",
                        help="local: this machine, one cell after another. ray: reconstructors and cells as Ray "
                             "tasks (README: On a Ray cluster); this machine still writes the store.")
    address = st.text_input("Ray address", key="run_ray_address", placeholder="empty: start a local Ray",
                            help="an existing cluster, e.g. head:6379 or ray://head:10001") if executor == "ray" else ""
    if st.button("Start", type="primary", disabled=busy or done, key="run_start"):
        if source == "dataset" or st.session_state[USER_MODELS]:
            # described on this page: written where the run, and a rerun from the command line, reads it
            path = paths.cache_dir() / "configs" / f"{config.name}-{config.config_hash()}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        builds.start_build("sweep", data.store().path, paths.progress_path(), paths.build_log(), path,
                           executor=executor, ray_address=address.strip() or None)
        st.rerun()
    if busy:
        st.caption("A build is running; start another when it ends.")
progress_panel()
