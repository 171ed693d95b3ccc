"""Generates the embedded chest X-ray cohort: subjects, findings and demographics drawn into the image.

Findings a classifier has to look at: cardiomegaly (an enlarged cardiac silhouette), pleural
effusion (fluid blunting a costophrenic angle), nodule (a small round opacity in a lung).
Demographics change the image: a breast soft-tissue shadow for female subjects, bone contrast
that falls and heart size that grows with age, a larger chest for male subjects.
Deterministic per (seed, subject).
"""

from __future__ import annotations

from functools import cached_property, partial

import numpy as np
import pandas as pd
from scipy import ndimage

from recon_core.cohorts.base import Cohort, CohortSource, assign_splits
from recon_core.cohorts.chest_anatomy import Template, template_for
from recon_core.cohorts.demographics import CohortError, age_band, require_varied
from recon_core.cohorts.spline_zoom import cubic_zoom
from recon_core.cohorts.workers import render_chunks
from recon_core.config import CohortConfig
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng

LABELS = ("cardiomegaly", "effusion", "nodule")
CHUNK = 100
"""Most subjects rendered per hand-off (and per progress report)."""


def sample_subjects(config: CohortConfig, seed: int) -> pd.DataFrame:
    """The subject table: id, sex, age, age band, split, finding labels and per-finding contrast."""
    unknown = set(config.prevalence) - set(LABELS)
    if unknown:
        raise CohortError(f"cohort.prevalence: unknown finding(s) {sorted(unknown)}; use {LABELS}")
    for knob in config.bias:
        if knob.label is not None and knob.label not in LABELS:
            raise CohortError(f"cohort.bias: unknown finding {knob.label!r}; use {LABELS}")
    rng = numpy_rng(seed, "subjects")
    n = config.n_subjects
    sex = rng.choice(np.array(["M", "F"]), size=n)
    age = np.clip(np.round(rng.normal(55, 17, size=n)), 18, 95)
    bands = age_band(age, config.age_band_edges).to_numpy()
    table = pd.DataFrame({
        "image_id": [f"cxr-{i:05d}" for i in range(n)],
        "subject_id": [f"s{i:05d}" for i in range(n)],
        "sex": sex, "age": age, "age_band": bands,
    })
    draws = rng.random((n, len(LABELS)))
    for j, label in enumerate(LABELS):
        prevalence = np.full(n, config.prevalence.get(label, 0.0))
        contrast = np.full(n, config.finding_contrast)
        for knob in config.bias:
            if knob.label not in (None, label):
                continue
            hit = (sex if knob.attribute == "sex" else bands) == knob.group
            if knob.prevalence is not None:
                prevalence[hit] = knob.prevalence
            contrast[hit] *= knob.contrast
        table[label] = (draws[:, j] < prevalence).astype(np.float32)
        table[f"{label}_contrast"] = contrast
    table["split"] = assign_splits(table["subject_id"].to_numpy(), config.split_fractions,
                                   numpy_rng(seed, "splits"))
    return table


def render_subject(template: Template, row: pd.Series, seed: int) -> np.ndarray:
    """Draws one subject's radiograph in [0, 1] from the template and the row's findings."""
    rng = numpy_rng(seed, "render", row["subject_id"])
    size = template.image.shape[0]
    lm = template.landmarks
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    age, female = float(row["age"]), row["sex"] == "F"

    bone = np.clip(1.25 - 0.008 * (age - 30), 0.55, 1.3)  # bone contrast falls with age
    image = template.image + (bone - 1.0) * template.detail
    if female:  # breast soft-tissue shadow over the lower lateral fields
        for cx, cy in ((0.24, 0.74), (0.77, 0.76)):
            r = np.sqrt(((xx - cx) / 0.2) ** 2 + ((yy - cy) / 0.14) ** 2)
            image = image + 0.10 * (1 / (1 + np.exp((r - 1) / 0.08))) * (yy > cy - 0.1)
    if row["effusion"] == 1:  # fluid rising laterally: the costophrenic angle is blunted
        sides = [0, 1] if rng.random() < 0.4 else [int(rng.integers(2))]
        for side in sides:
            cpx, cpy = lm.costophrenic[side]
            height = rng.uniform(0.09, 0.15)
            lateral = np.exp(-((xx - cpx) / 0.2) ** 2)
            surface = cpy - height * (0.35 + 0.65 * lateral)  # meniscus: higher laterally
            fluid = (1 / (1 + np.exp(-(yy - surface) / 0.012))) * (1 / (1 + np.exp((yy - cpy - 0.02) / 0.015)))
            same_side = 1 / (1 + np.exp((0.5 - xx) / 0.02)) if side else 1 / (1 + np.exp((xx - 0.5) / 0.02))
            image = image + 0.30 * row["effusion_contrast"] * fluid * same_side * (0.3 + 0.7 * lateral)
    if row["nodule"] == 1:  # a round opacity somewhere inside a lung field
        cx, cy, rx, ry = lm.lungs[int(rng.integers(2))]
        ang, rad = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.7))
        nx, ny = cx + rad * rx * np.cos(ang), cy + rad * ry * np.sin(ang)
        sigma = rng.uniform(0.02, 0.03)
        blob = np.exp(-((xx - nx) ** 2 + (yy - ny) ** 2) / (2 * sigma ** 2))
        image = image + 0.4 * row["nodule_contrast"] * blob

    # One coordinate map: subject affine + elastic warp, then cardiac magnification.
    scale = rng.uniform(0.95, 1.03) * (1.03 if not female else 0.98)
    angle = np.deg2rad(rng.uniform(-4, 4))
    shift = rng.uniform(-0.025, 0.025, size=2)
    u, v = xx - 0.5, yy - 0.5
    qx = (np.cos(angle) * u - np.sin(angle) * v) / scale + 0.5 + shift[0]
    qy = (np.sin(angle) * u + np.cos(angle) * v) / scale + 0.5 + shift[1]
    field_x, field_y = cubic_zoom(rng.normal(0, 0.012, size=(2, 6, 6)), size)  # smooth elastic warp
    qx, qy = qx + field_x, qy + field_y
    hx, hy = lm.heart_center
    hrx, hry = lm.heart_radius
    magnify = max(0.0, 0.02 + 0.0025 * (age - 40))  # hearts grow a little with age
    if row["cardiomegaly"] == 1:
        magnify += 0.3 * row["cardiomegaly_contrast"]
    dx, dy = (qx - hx) / (1.4 * hrx), (qy - hy) / (1.4 * hry)
    shrink = 1 - min(magnify, 0.6) * np.exp(-(dx ** 2 + dy ** 2) / 2)
    qx, qy = hx + (qx - hx) * shrink, hy + (qy - hy) * shrink
    warped = ndimage.map_coordinates(image, [qy * (size - 1), qx * (size - 1)], order=1, mode="nearest")

    gamma = rng.uniform(0.85, 1.15)  # exposure and processing differ between acquisitions
    warped = np.clip(warped, 0, 1) ** gamma
    warped = warped * rng.uniform(0.92, 1.0) + rng.uniform(0.0, 0.04)
    return np.clip(warped, 0, 1).astype(np.float32)


def _render_rows(anatomy: str, size: int, seed: int, rows: pd.DataFrame) -> np.ndarray:
    """(len(rows), size, size) images of a chunk of subjects: one worker's share of `generate_cohort`."""
    template = template_for(anatomy, size)
    images = np.empty((len(rows), size, size), np.float32)
    for i, (_, row) in enumerate(rows.iterrows()):
        images[i] = render_subject(template, row, seed)
    return images


def generate_cohort(config: CohortConfig, seed: int, progress: Progress = silent,
                    workers: int | None = None) -> Cohort:
    """The embedded synthetic chest X-ray cohort, deterministic per seed and the same for any `workers`.

    `workers`: processes to render over (None: `workers.cohort_workers()`, the CPUs available).
    """
    subjects = sample_subjects(config, seed)
    require_varied(subjects, ["sex", "age_band"], f"synthetic cohort (n={config.n_subjects})")
    template_for(config.anatomy, config.image_size)  # built once here, inherited by the workers
    render = partial(_render_rows, config.anatomy, config.image_size, seed)
    images = np.concatenate(list(render_chunks(render, subjects, workers, CHUNK, progress, "generating cohort")))
    return Cohort(subjects, images, LABELS, source=f"synthetic:{config.anatomy}")


class SyntheticChestSource(CohortSource):
    """The generated chest X-ray cohort; one subject is re-rendered on its own for a replay."""

    labels = LABELS

    def load(self, progress: Progress = silent) -> Cohort:
        return generate_cohort(self.config, self.seed, progress)

    @cached_property
    def _subjects(self) -> pd.DataFrame:
        return sample_subjects(self.config, self.seed).set_index("image_id", drop=False)

    @cached_property
    def _template(self) -> Template:
        return template_for(self.config.anatomy, self.config.image_size)

    def item(self, image_id: str) -> tuple[np.ndarray, None]:
        if image_id not in self._subjects.index:
            raise CohortError(f"image {image_id!r} is not in this study's cohort")
        return render_subject(self._template, self._subjects.loc[image_id], self.seed), None
