"""The cohort: a subject table plus images in [0, 1], split by subject into four disjoint roles."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recon_core.cohorts.demographics import CohortError
from recon_core.config import CohortConfig
from recon_core.progress import Progress, silent

SPLITS = ("recon_train", "diag_train", "val", "test")
"""Reconstructor training, diagnostic training, validation (threshold choice), test."""

REQUIRED_COLUMNS = ("image_id", "subject_id", "sex", "age", "age_band", "split")


@dataclass
class Cohort:
    """Subjects (one row per image) and their images, float32 (N, H, W) in [0, 1].

    Label columns hold 1, 0 or NaN (unknown); their names are in `labels`.
    """

    subjects: pd.DataFrame
    images: np.ndarray
    labels: tuple[str, ...]
    source: str
    masks: np.ndarray | None = None  # MRI: uint8 (N, H, W) tumour masks; None for X-ray

    def __post_init__(self) -> None:
        missing = [c for c in (*REQUIRED_COLUMNS, *self.labels) if c not in self.subjects]
        if missing:
            raise CohortError(f"{self.source}: cohort table lacks columns {missing}")
        if len(self.subjects) != len(self.images):
            raise CohortError(f"{self.source}: {len(self.subjects)} rows but {len(self.images)} images")
        if self.masks is not None and self.masks.shape != self.images.shape:
            raise CohortError(f"{self.source}: masks of shape {self.masks.shape} do not match images "
                              f"{self.images.shape}")
        unknown = set(self.subjects["split"]) - set(SPLITS)
        if unknown:
            raise CohortError(f"{self.source}: unknown split value(s) {sorted(unknown)}; use {SPLITS}")
        per_subject = self.subjects.groupby("subject_id")["split"].nunique()
        leaking = per_subject[per_subject > 1]
        if len(leaking):
            raise CohortError(f"{self.source}: subject {leaking.index[0]!r} appears in several splits")
        self.subjects = self.subjects.reset_index(drop=True)

    def split(self, name: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Rows and images of one split."""
        mask = (self.subjects["split"] == name).to_numpy()
        return self.subjects[mask].reset_index(drop=True), self.images[mask]

    def split_masks(self, name: str) -> np.ndarray:
        """Tumour masks of one split (MRI cohorts only)."""
        if self.masks is None:
            raise CohortError(f"{self.source}: this cohort has no segmentation masks")
        return self.masks[(self.subjects["split"] == name).to_numpy()]


def assign_splits(subject_ids: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Assigns each unique subject one split by a seeded permutation, in the given proportions."""
    unique = np.unique(subject_ids)
    order = rng.permutation(len(unique))
    bounds = np.round(np.cumsum(fractions) * len(unique)).astype(int)
    split_of = np.empty(len(unique), dtype=object)
    start = 0
    for name, stop in zip(SPLITS, bounds, strict=True):
        split_of[order[start:stop]] = name
        start = stop
    lookup = dict(zip(unique, split_of, strict=True))
    return np.array([lookup[s] for s in subject_ids], dtype=object)


class CohortSource(ABC):
    """Where a study's images come from: the whole cohort for a sweep, or one image for a replay.

    `item` gives one clean image (and its mask, for cohorts with masks) exactly as `load` makes
    it, without building the rest of the cohort: a replay of one case renders or reads one subject.
    """

    labels: tuple[str, ...]

    def __init__(self, config: CohortConfig, seed: int) -> None:
        self.config = config
        self.seed = seed

    @abstractmethod
    def load(self, progress: Progress = silent) -> Cohort:
        """The whole cohort, every split."""

    @abstractmethod
    def item(self, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(clean image (H, W) in [0, 1], its uint8 mask or None) of one image id; CohortError if not in the cohort."""

    def check(self) -> None:
        """Checks the source's files and values before anything is stored; CohortError names the first problem.

        A generated cohort has nothing to check; a dataset on disk reads its manifest (paths
        confined to the dataset's folder, every file present) without decoding an image.
        """
        return None  # generated: nothing on disk to check

    def fingerprint(self) -> str:
        """A content fingerprint of the data on disk ('' for a generated cohort, which its config fully determines)."""
        return ""


def slice_of(image_id: str, subjects: pd.Index, count: int) -> tuple[str, int]:
    """(subject id, slice index) of an MRI slice id '<subject>-s<k>'; CohortError if it is not in the cohort."""
    subject, _, k = image_id.rpartition("-s")
    if subject not in subjects or not k.isdigit() or int(k) >= count:
        raise CohortError(f"slice {image_id!r} is not in this study's cohort")
    return subject, int(k)
