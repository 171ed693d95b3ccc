"""Reads a CheXpert/MIMIC-CXR-style dataset: a CSV (image path, labels, sex, age) and an image folder."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from skimage.transform import resize

from recon_core.cohorts.base import SPLITS, Cohort, CohortSource, assign_splits
from recon_core.cohorts.demographics import (
    FIRST_ROW,
    SHOWN,
    CohortError,
    Problems,
    age_band,
    bad_rows,
    parse_age,
    parse_sex,
    require_varied,
)
from recon_core.cohorts.fingerprint import dataset_fingerprint
from recon_core.config import MIN_SPLIT_SUBJECTS, CohortConfig, CsvSourceConfig
from recon_core.confinement import OutsideRootsError, confine, confine_all, extra_roots, root_folder
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng


def _labels(table: pd.DataFrame, columns: tuple[str, ...], source: str) -> pd.DataFrame:
    """CheXpert label convention: 1 positive, 0 or blank negative-or-unknown, -1 uncertain → missing.

    Every bad value of every label column is reported at once.
    """
    out, found = {}, []
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = (table[column].notna() & values.isna()) | (values.notna() & ~values.isin([0.0, 1.0, -1.0]))
        if bad.any():
            found.append(f"label column {column!r}: {bad_rows(table[column], bad, 'value not 1/0/-1/blank')}")
        # uncertain (-1) and blank become missing: they are never scored
        out[column] = values.where(values >= 0).astype(np.float32)
    if found:
        raise CohortError(f"{source}: " + "; ".join(found))
    return pd.DataFrame(out, index=table.index)


def read_image(path: Path, size: int) -> np.ndarray:
    """One PNG/JPEG as float32 (size, size) in [0, 1]; grayscale, per-image min-max scaled."""
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("F"), dtype=np.float32)
    except FileNotFoundError:
        raise CohortError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise CohortError(f"{path}: unreadable image ({exc})") from None
    lo, hi = float(pixels.min()), float(pixels.max())
    if hi <= lo:
        raise CohortError(f"{path}: image is constant ({lo}); nothing to evaluate")
    scaled = (pixels - lo) / (hi - lo)
    return resize(scaled, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)


def dataset_roots(spec: CsvSourceConfig) -> list[Path]:
    """The folders a CSV dataset may be read from: its image root, plus any the user allowed in $TANDEM_DATA_ROOTS."""
    try:
        return [root_folder(spec.image_root, "image_root"), *extra_roots()]
    except OutsideRootsError as exc:
        raise CohortError(str(exc)) from None


def confined_csv(spec: CsvSourceConfig) -> Path:
    """The manifest CSV, resolved inside the dataset's folders (a symlink elsewhere is refused unread)."""
    try:
        return confine(spec.csv_path, dataset_roots(spec), what="manifest CSV")
    except OutsideRootsError as exc:
        raise CohortError(str(exc)) from None


def _require_usable_splits(subjects: pd.DataFrame, labels: tuple[str, ...], source: str) -> None:
    """Every split large enough to train or test on, and both classes of each finding in validation and test.

    Found here, before anything is stored, rather than after training (an empty batch, or no
    operating threshold for a finding without positives in the validation split).
    """
    counts = subjects["split"].value_counts()
    small = {name: int(counts.get(name, 0)) for name in SPLITS if counts.get(name, 0) < MIN_SPLIT_SUBJECTS}
    if small:
        raise CohortError(f"{source}: split(s) {small} hold fewer than {MIN_SPLIT_SUBJECTS} images; a study needs "
                          f"that many in each of {SPLITS} (more rows, or other split_fractions / split column)")
    for name in ("val", "test"):
        part = subjects[subjects["split"] == name]
        one_class = [lb for lb in labels if part[lb].dropna().nunique() < 2]
        if one_class:
            raise CohortError(f"{source}: the {name!r} split has a single class of {one_class} (all present, all "
                              "absent or all unknown); thresholds and AUROC need both")


def _image_files(paths: list[str], root: Path, source: str) -> list[Path]:
    """The listed images resolved inside `root`; every path leading outside it in one CohortError."""
    try:
        return confine_all(paths, root)
    except OutsideRootsError as exc:
        raise CohortError(f"{source}: {exc}") from None


def read_manifest(config: CohortConfig, seed: int) -> pd.DataFrame:
    """The subject table of a CSV dataset, every value checked, and every image file present inside its root.

    Cheap (no image is decoded), so the dashboard can validate a dataset before any run starts.
    Every problem is reported at once in one CohortError naming the file, columns, rows (numbered
    as a spreadsheet shows them) and values as written; image paths that lead outside the image
    root ('..', absolute, symlinked) are refused before anything is opened.
    """
    spec = config.csv
    csv_path, root = confined_csv(spec), dataset_roots(spec)[0]
    source = str(spec.csv_path)
    try:  # every value as text, as written: an empty cell is missing, the text "nan" is a value
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise CohortError(f"{csv_path}: CSV file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CohortError(f"{csv_path}: not a readable CSV ({exc})") from None
    needed = [spec.path_column, spec.sex_column, spec.age_column, *spec.labels]
    needed += [c for c in (spec.subject_column, spec.split_column) if c] + list(spec.extra_attributes)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise CohortError(f"{source}: missing column(s) {missing}; found {list(table.columns)}")
    if table.empty:
        raise CohortError(f"{source}: no rows")
    problems = Problems(source)
    paths = table[spec.path_column].fillna("")
    sex = problems.run(parse_sex, table[spec.sex_column], source, spec.sex_column, spec.sex_codes)
    age = problems.run(parse_age, table[spec.age_column], source, spec.age_column)
    labels = problems.run(_labels, table, spec.labels, source)
    for column in (spec.path_column, *spec.extra_attributes):
        empty = table[column].isna()
        if empty.any():
            problems.found.append(f"column {column!r}: {bad_rows(table[column], empty, 'missing value')}")
    listed = paths[paths != ""]
    files = problems.run(_image_files, listed.tolist(), root, source)
    if files is not None:
        resolved = pd.Series([str(f) for f in files], index=listed.index)
        twice = resolved.duplicated(keep=False)  # 'img/a.png' and './img/a.png' are one image
        if twice.any():
            problems.found.append(f"column {spec.path_column!r}: {bad_rows(listed, twice, 'one image listed twice')}")
        absent = pd.Series([not f.is_file() for f in files], index=listed.index)
        if absent.any():
            problems.found.append(f"column {spec.path_column!r}: "
                                  f"{bad_rows(listed, absent, f'image file not found under {root}')}")
    problems.raise_if_any()
    subjects = pd.DataFrame({
        "image_id": paths.astype(str),
        "subject_id": table[spec.subject_column].astype(str) if spec.subject_column else paths.astype(str),
        "sex": sex, "age": age,
    })
    subjects["age_band"] = age_band(subjects["age"], config.age_band_edges).to_numpy()
    if spec.split_column:
        subjects["split"] = table[spec.split_column].astype(str).to_numpy()
    else:
        subjects["split"] = assign_splits(subjects["subject_id"].to_numpy(), config.split_fractions,
                                          numpy_rng(seed, "splits", source))
    subjects = pd.concat([subjects, labels], axis=1)
    for column in spec.extra_attributes:
        subjects[column] = table[column].astype(str).str.strip().to_numpy()
    require_varied(subjects, ["sex", "age_band", *spec.extra_attributes], source)
    return subjects


def decode_all(config: CohortConfig, seed: int, progress: Progress = silent) -> int:
    """Decodes every listed image as a sweep will; every unreadable or constant one in one CohortError.

    The manifest check opens no image; this is the slower pre-check that does, so a damaged file
    is found before training rather than halfway through it. Returns how many images decoded.
    """
    subjects = read_manifest(config, seed)
    root = dataset_roots(config.csv)[0]
    failed = []
    for i, (row, rel) in enumerate(zip(subjects.index, subjects["image_id"], strict=True)):
        try:
            read_image(root / rel, config.image_size)
        except CohortError as exc:
            failed.append(f"row {row + FIRST_ROW} {rel!r}: {str(exc).split(': ', 1)[-1]}")
        progress("decoding images", i + 1, len(subjects))
    if failed:
        more = f" and {len(failed) - SHOWN} more" if len(failed) > SHOWN else ""
        raise CohortError(f"{config.csv.csv_path}: {len(failed)} of {len(subjects)} image(s) cannot be used: "
                          + "; ".join(failed[:SHOWN]) + more)
    return len(subjects)


def load_csv_cohort(config: CohortConfig, seed: int, progress: Progress = silent) -> Cohort:
    """A cohort from a local CSV + image folder; every bad value is an error naming file, column and row."""
    spec = config.csv
    root = dataset_roots(spec)[0]
    subjects = read_manifest(config, seed)  # every listed path is confined to the root here
    images = np.empty((len(subjects), config.image_size, config.image_size), np.float32)
    for i, rel in enumerate(subjects["image_id"]):
        images[i] = read_image(root / rel, config.image_size)
        if i % 50 == 0 or i == len(subjects) - 1:
            progress("reading images", i + 1, len(subjects))
    return Cohort(subjects, images, tuple(spec.labels), source=spec.csv_path)


class CsvChestSource(CohortSource):
    """A CheXpert/MIMIC-style CSV dataset; one listed image is read on its own for a replay."""

    def __init__(self, config: CohortConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.labels = tuple(config.csv.labels)

    def load(self, progress: Progress = silent) -> Cohort:
        return load_csv_cohort(self.config, self.seed, progress)

    @cached_property
    def _manifest(self) -> pd.DataFrame:
        return read_manifest(self.config, self.seed)

    def check(self) -> None:
        """The manifest read and checked once (kept for the fingerprint), and its splits usable for a study."""
        _require_usable_splits(self._manifest, tuple(self.config.csv.labels), str(self.config.csv.csv_path))

    def fingerprint(self) -> str:
        """The manifest's bytes and every listed image (read_manifest has confined and found them all)."""
        root = dataset_roots(self.config.csv)[0]
        images = confine_all(self._manifest["image_id"].tolist(), root)
        return dataset_fingerprint(confined_csv(self.config.csv), images)

    @cached_property
    def _listed(self) -> set[str]:
        spec = self.config.csv
        try:
            return set(pd.read_csv(confined_csv(spec), usecols=[spec.path_column])[spec.path_column].astype(str))
        except (FileNotFoundError, ValueError, pd.errors.ParserError) as exc:
            raise CohortError(f"{spec.csv_path}: cannot list the dataset's images ({exc})") from None

    def item(self, image_id: str) -> tuple[np.ndarray, None]:
        spec = self.config.csv
        if image_id not in self._listed:
            raise CohortError(f"image {image_id!r} is not listed in {spec.csv_path}")
        root = dataset_roots(spec)[0]
        try:
            path = confine(image_id, [root], base=root, what="image path")
        except OutsideRootsError as exc:
            raise CohortError(str(exc)) from None
        return read_image(path, self.config.image_size), None
