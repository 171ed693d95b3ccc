"""Reads a UCSF-PDGM/BraTS-style MRI dataset: per patient a sequence volume and a tumour segmentation (NIfTI),
plus a metadata CSV (patient id, sex, age, grade, optional split).

Axial slices `slice_range` of each volume are min-max scaled per slice (as the reference study)
and resized to the study's image size (masks by nearest neighbour). Every problem is a
CohortError naming the file, column, patient or value: a mask whose shape differs from its
image, a slice range outside the volume, a missing file, an unknown grade.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.transform import resize

from recon_core.cohorts.base import Cohort, CohortSource, assign_splits, slice_of
from recon_core.cohorts.demographics import (
    CohortError,
    Problems,
    age_band,
    bad_rows,
    parse_age,
    parse_sex,
    require_varied,
)
from recon_core.cohorts.fingerprint import dataset_fingerprint
from recon_core.config import CohortConfig, NiftiSourceConfig
from recon_core.confinement import OutsideRootsError, confine, confine_all, extra_roots, root_folder
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng

LABELS = ("high_grade",)


def nifti_root(spec: NiftiSourceConfig) -> Path:
    """The dataset's root folder, resolved (CohortError for one that cannot be)."""
    try:
        return root_folder(spec.root, "nifti.root")
    except OutsideRootsError as exc:
        raise CohortError(str(exc)) from None


def metadata_csv(spec: NiftiSourceConfig) -> Path:
    """The metadata CSV, resolved inside the dataset root or a folder of $TANDEM_DATA_ROOTS."""
    try:
        return confine(spec.metadata_csv, [nifti_root(spec), *extra_roots()], what="metadata CSV")
    except OutsideRootsError as exc:
        raise CohortError(str(exc)) from None


def patient_files(spec: NiftiSourceConfig, subject_id: str) -> tuple[Path, Path]:
    """A patient's volume and mask, resolved inside the dataset root (a path leading elsewhere is refused)."""
    root = nifti_root(spec)
    try:
        image, mask = confine_all([spec.image_pattern.format(id=subject_id), spec.mask_pattern.format(id=subject_id)],
                                  root, what="NIfTI path")
    except OutsideRootsError as exc:
        raise CohortError(f"patient {subject_id!r}: {exc}") from None
    return image, mask


def read_metadata(config: CohortConfig, seed: int) -> pd.DataFrame:
    """One row per patient, every value checked and both files present inside the root (no volume is decoded)."""
    spec = config.nifti
    csv_path = metadata_csv(spec)
    try:
        table = pd.read_csv(csv_path, dtype={spec.id_column: str, spec.grade_column: str})
    except FileNotFoundError:
        raise CohortError(f"{csv_path}: metadata CSV not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise CohortError(f"{csv_path}: not a readable CSV ({exc})") from None
    needed = [spec.id_column, spec.sex_column, spec.age_column, spec.grade_column]
    needed += [spec.split_column] if spec.split_column else []
    missing = [c for c in needed if c not in table]
    if missing:
        raise CohortError(f"{csv_path}: missing column(s) {missing}; found {list(table.columns)}")
    grades = table[spec.grade_column].astype(str).str.strip()
    ids = table[spec.id_column].astype(str).str.strip()
    problems = Problems(str(csv_path))  # every problem in one round, as for a CSV manifest
    sex = problems.run(parse_sex, table[spec.sex_column], str(csv_path), spec.sex_column)
    age = problems.run(parse_age, table[spec.age_column], str(csv_path), spec.age_column)
    twice = ids.duplicated(keep=False)
    if twice.any():
        problems.found.append(f"column {spec.id_column!r}: {bad_rows(ids, twice, 'patient listed twice')}")
    missing = [f"{path}: file of patient {pid!r} not found" for pid in ids
               for path in (problems.run(patient_files, spec, pid) or ()) if not path.exists()]
    if missing:  # every missing file named, the first few in full
        problems.found.append(missing[0] if len(missing) == 1 else
                              f"{len(missing)} files not found: " + "; ".join(missing[:5])
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    patients = pd.DataFrame({"subject_id": ids, "sex": sex, "age": age,
                             "high_grade": grades.isin(spec.high_grade_values).astype(np.float32)})
    if sex is not None and age is not None:
        patients["age_band"] = age_band(patients["age"], config.age_band_edges).to_numpy()
        problems.run(require_varied, patients, ("sex", "age_band", "high_grade"), str(csv_path))
    problems.raise_if_any()
    if spec.split_column:
        patients["split"] = table[spec.split_column].astype(str).to_numpy()
    else:
        patients["split"] = assign_splits(patients.subject_id.to_numpy(), config.split_fractions,
                                          numpy_rng(seed, "splits"))
    return patients


def read_patient(config: CohortConfig, subject_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, H, W) slices in [0, 1] and uint8 tumour masks of one patient, checked against each other."""
    import nibabel as nib

    spec = config.nifti
    image_path, mask_path = patient_files(spec, subject_id)
    try:
        volume = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
        labels = np.asarray(nib.load(mask_path).dataobj)
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise CohortError(f"{image_path} / {mask_path}: unreadable NIfTI ({exc})") from None
    if volume.ndim != 3:
        raise CohortError(f"{image_path}: expected a 3D volume, got shape {volume.shape}")
    if labels.shape != volume.shape:
        raise CohortError(f"{mask_path}: mask shape {labels.shape} differs from image shape {volume.shape} "
                          f"({image_path.name})")
    start, stop = spec.slice_range
    if stop > volume.shape[2]:
        raise CohortError(f"{image_path}: slice range [{start}, {stop}) is outside the volume's "
                          f"{volume.shape[2]} axial slices")
    size = config.image_size
    images = np.empty((stop - start, size, size), np.float32)
    masks = np.empty((stop - start, size, size), np.uint8)
    for j, k in enumerate(range(start, stop)):
        image = np.rot90(volume[:, :, k])
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        images[j] = resize(image, (size, size), anti_aliasing=True, preserve_range=True)
        mask = np.isin(np.rot90(labels[:, :, k]), spec.tumour_labels)
        masks[j] = resize(mask, (size, size), order=0, anti_aliasing=False, preserve_range=True) > 0.5
    return np.clip(images, 0, 1), masks


def load_nifti_cohort(config: CohortConfig, seed: int, progress: Progress = silent) -> Cohort:
    """Every patient's slices in the range, one row per slice (image_id '<patient>-s<k>')."""
    patients = read_metadata(config, seed)
    parts = []
    for i, pid in enumerate(patients.subject_id):
        parts.append(read_patient(config, pid))
        progress("reading NIfTI volumes", i + 1, len(patients))
    start, stop = config.nifti.slice_range
    n = stop - start
    rows = patients.loc[patients.index.repeat(n)].reset_index(drop=True)
    rows.insert(0, "image_id", [f"{p}-s{k}" for p in patients.subject_id for k in range(n)])
    rows["slice"] = np.tile(np.arange(start, stop), len(patients))
    masks = np.concatenate([m for _, m in parts])
    rows["tumour_pixels"] = masks.reshape(len(masks), -1).sum(1)
    return Cohort(rows, np.concatenate([im for im, _ in parts]), LABELS, str(config.nifti.metadata_csv), masks=masks)


class NiftiBrainSource(CohortSource):
    """A UCSF-PDGM/BraTS-style NIfTI folder; one patient's volume is read on its own for a replay of one slice."""

    labels = LABELS

    def load(self, progress: Progress = silent) -> Cohort:
        return load_nifti_cohort(self.config, self.seed, progress)

    @cached_property
    def _patients(self) -> pd.DataFrame:
        return read_metadata(self.config, self.seed).set_index("subject_id", drop=False)

    def check(self) -> None:
        """The metadata read and checked once (kept for the fingerprint)."""
        self._patients  # noqa: B018 (reading it is the check)

    def fingerprint(self) -> str:
        """The metadata CSV's bytes and every patient's volume and mask."""
        spec = self.config.nifti
        files = [f for pid in self._patients.subject_id for f in patient_files(spec, pid)]
        return dataset_fingerprint(metadata_csv(spec), files)

    def item(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.config.nifti.slice_range
        subject, k = slice_of(image_id, self._patients.index, stop - start)
        images, masks = read_patient(self.config, subject)
        return images[k], masks[k]
