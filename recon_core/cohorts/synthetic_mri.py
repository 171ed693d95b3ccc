"""Generates the embedded brain-MRI cohort: patients with several axial slices, a tumour, its mask and its grade.

Each patient is a warped copy of a brain template (MNI152 or procedural) with a 3D tumour
cut by 8 (configurable) axial slices 3 mm apart, so some edge slices miss it (empty masks
happen, as in real data). The grade is visible but not certain, as in glioma imaging: high-grade
tumours are larger on average and mostly (80 %) ring-enhancing around a dark necrotic core, the
rest solid and enhancing; low-grade ones are smaller and mostly homogeneously hypointense, a
fifth with faint patchy enhancement. Sizes overlap, so size alone does not give the grade.
The segmentation mask is the tumour core (enhancing rim and necrosis, or the low-grade
mass); the surrounding oedema is drawn but not part of the mask.
Demographics change the image: the head is smaller for female patients, and with age the
ventricles widen and the CSF spaces darken (atrophy). Bias knobs can change the grade
prevalence, tumour contrast or size in one group. Every slice has a known lesion site
(`lesion_sites`): its tumour cross-section, or the patient's tumour centre as a sham site for a
slice the tumour misses. Deterministic per (seed, patient).
"""

from __future__ import annotations

import warnings
from functools import cached_property, partial

import numpy as np
import pandas as pd
from scipy import ndimage

from recon_core.cohorts.base import Cohort, CohortSource, assign_splits, slice_of
from recon_core.cohorts.brain_anatomy import BrainStack, brain_stack
from recon_core.cohorts.demographics import CohortError, age_band, require_varied
from recon_core.cohorts.workers import render_chunks
from recon_core.config import CohortConfig
from recon_core.metrics.lesions import SITE_COLUMNS, matched_contrast
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng

LABELS = ("high_grade",)
SLICE_SPACING_MM = 3.0
CHUNK = 20
"""Most patients rendered per hand-off (and per progress report)."""
MIN_AMPLITUDE = 0.02
"""A tumour whose measured contrast is smaller than this (a ring and a dark core cancelling) is not judged."""


def sample_patients(config: CohortConfig, seed: int) -> pd.DataFrame:
    """One row per patient: id, sex, age, age band, split, grade and the tumour's contrast and size factors."""
    for knob in config.bias:
        if knob.label not in (None, *LABELS):
            raise CohortError(f"cohort.bias: unknown MRI label {knob.label!r}; use {LABELS}")
    rng = numpy_rng(seed, "patients")
    n = config.n_subjects
    sex = rng.choice(np.array(["M", "F"]), size=n)
    age = np.clip(np.round(rng.normal(58, 15, size=n)), 18, 90)
    bands = age_band(age, config.age_band_edges).to_numpy()
    prevalence = np.full(n, config.prevalence.get("high_grade", 0.5))
    contrast = np.full(n, config.finding_contrast)
    size = np.ones(n)
    for knob in config.bias:
        hit = (sex if knob.attribute == "sex" else bands) == knob.group
        if knob.prevalence is not None:
            prevalence[hit] = knob.prevalence
        contrast[hit] *= knob.contrast
        size[hit] *= knob.size
    table = pd.DataFrame({
        "subject_id": [f"p{i:04d}" for i in range(n)], "sex": sex, "age": age, "age_band": bands,
        "high_grade": (rng.random(n) < prevalence).astype(np.float32),
        "tumour_contrast": contrast, "tumour_size": size,
    })
    high = table.high_grade.to_numpy() == 1
    # the visible appearance: necrosis in most high-grade tumours, faint enhancement in some low-grade ones
    table["appearance"] = np.where(high, np.where(rng.random(n) < 0.8, "necrotic", "solid_enhancing"),
                                   np.where(rng.random(n) < 0.2, "patchy_enhancing", "hypointense"))
    table["split"] = assign_splits(table["subject_id"].to_numpy(), config.split_fractions,
                                   numpy_rng(seed, "splits"))
    return table


def _smooth(rng: np.random.Generator, size: int, amplitude: float, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="reflect")
    return field / (np.abs(field).max() + 1e-9) * amplitude


def render_patient(stack: BrainStack, patient: pd.Series, n_slices: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], np.ndarray]:
    """(n_slices, H, W) float32 images in [0, 1], uint8 tumour masks, the tumour's in-plane (y, x, radius) in
    pixels (where a slice the tumour misses has its sham lesion site), and the same slices without the tumour
    and its oedema (scaled by each image's own min-max, so the two differ only by the lesion): the lesion-free
    clean images the hallucination check's residual map is read against."""
    rng = numpy_rng(seed, "mri-patient", patient.subject_id)
    depth, size = stack.t1.shape[0], stack.t1.shape[1]
    high = patient.high_grade == 1
    # geometry shared by the patient's slices: head size by sex, pose, atrophy by age
    scale = (1.0 if patient.sex == "M" else 0.93) * (1 + 0.03 * rng.standard_normal())
    angle = np.deg2rad(rng.uniform(-7, 7))
    shift = rng.uniform(-0.03, 0.03, 2) * size
    atrophy = float(np.clip((patient.age - 35) / 50, 0, 1))
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - centre - shift[0], xx - centre - shift[1]
    cos, sin = np.cos(angle), np.sin(angle)
    sy, sx = (cos * dy + sin * dx) / scale, (-sin * dy + cos * dx) / scale
    widen = 1 + 0.3 * atrophy * np.exp(-(sy ** 2 + sx ** 2) / (2 * (0.12 * size) ** 2))  # ventricles widen
    src_y, src_x = centre + sy / widen, centre + sx / widen
    src_y = src_y + _smooth(rng, size, 1.2, size / 10)  # gentle elastic variation
    src_x = src_x + _smooth(rng, size, 1.2, size / 10)
    bias = np.exp(_smooth(rng, size, 0.12, size / 4))
    # slices: 3 mm apart around a centre chosen inside the ventricle-bearing range
    margin = SLICE_SPACING_MM * (n_slices - 1) / 2 + 1
    centre_z = rng.uniform(margin + 10, depth - margin - 10)
    zs = centre_z + SLICE_SPACING_MM * (np.arange(n_slices) - (n_slices - 1) / 2)
    # the tumour: an irregular ellipsoid, centre somewhere inside the brain of the middle slice
    radius = rng.uniform(0.065, 0.11) * size if high else rng.uniform(0.05, 0.085) * size
    radius *= float(patient.tumour_size)
    radius_mm = radius * stack.mm_per_pixel
    tumour_z = centre_z + rng.uniform(-0.5, 0.5) * radius_mm
    middle = ndimage.map_coordinates(stack.brain[round(centre_z)].astype(np.float32), [src_y, src_x],
                                     order=0) > 0.5
    inside = ndimage.distance_transform_edt(middle) > radius * 1.3
    candidates = np.argwhere(inside if inside.any() else middle)
    if not len(candidates):
        raise CohortError(f"{patient.subject_id}: no brain in the chosen slices; check the template")
    ty, tx = candidates[rng.integers(len(candidates))]
    theta = np.arctan2(yy - ty, xx - tx)
    wobble = 1 + sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    distance = np.hypot(yy - ty, xx - tx) / wobble
    contrast = float(patient.tumour_contrast)
    images, masks = np.empty((n_slices, size, size), np.float32), np.zeros((n_slices, size, size), np.uint8)
    free = np.empty_like(images)
    for j, z in enumerate(zs):
        k = int(np.clip(round(z), 0, depth - 1))
        t1 = ndimage.map_coordinates(stack.t1[k], [src_y, src_x], order=1)
        csf = ndimage.map_coordinates(stack.csf[k], [src_y, src_x], order=1)
        image = t1 * (1 - 0.45 * atrophy * csf)
        lesion_free = image
        along = (z - tumour_z) / radius_mm
        if abs(along) < 1:
            rho = radius * np.sqrt(1 - along ** 2)  # cross-section radius in this slice
            oedema = ndimage.gaussian_filter((distance <= 1.6 * rho).astype(np.float64), 0.8)
            image = image * (1 - 0.2 * contrast * oedema)
            core = distance <= rho
            mass = ndimage.gaussian_filter(core.astype(np.float64), 0.6)
            if patient.appearance == "necrotic":
                rim = ndimage.gaussian_filter((core & (distance > 0.6 * rho)).astype(np.float64), 0.6)
                necrosis = ndimage.gaussian_filter((distance <= 0.6 * rho).astype(np.float64), 0.6)
                image = image + contrast * (0.45 * rim - 0.5 * image * necrosis)
            elif patient.appearance == "solid_enhancing":
                image = image + contrast * 0.3 * mass
            elif patient.appearance == "patchy_enhancing":
                patches = ndimage.gaussian_filter(rng.random((size, size)), 1.5) > 0.5
                image = image * (1 - 0.5 * contrast * mass) + contrast * 0.25 * mass * patches
            else:
                image = image * (1 - 0.5 * contrast * mass)
            masks[j] = core
        image = image * bias
        lo, hi = float(image.min()), float(image.max())
        images[j] = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)  # per-slice min-max, as the reference
        free[j] = np.clip((lesion_free * bias - lo) / max(hi - lo, 1e-6), 0, 1)
    return images, masks, (float(ty), float(tx), float(radius)), free


def _render_patients(anatomy: str, size: int, n_slices: int, seed: int,
                     patients: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(images, masks, lesion sites) of a chunk of patients, n_slices rows each: one worker's share of
    `generate_cohort`."""
    stack = brain_stack(anatomy, size)
    images = np.empty((len(patients) * n_slices, size, size), np.float32)
    masks = np.empty(images.shape, np.uint8)
    free = np.empty_like(images)
    tumours = np.empty((len(patients), 3))
    for i, patient in enumerate(patients.itertuples(index=False)):
        rows = slice(i * n_slices, (i + 1) * n_slices)
        images[rows], masks[rows], tumours[i], free[rows] = render_patient(stack, patient, n_slices, seed)
    return images, masks, lesion_sites(images, masks, tumours, free)


def lesion_sites(images: np.ndarray, masks: np.ndarray, tumours: np.ndarray, free: np.ndarray) -> pd.DataFrame:
    """Every slice's known lesion site (`metrics.lesions.SITE_COLUMNS`): its tumour, or the patient's as a sham.

    A slice the tumour cuts has its site at the mask's centroid and its σ from the mask's second
    moment (a disc of radius r gives σ = r / 2); a slice it misses has the patient's tumour centre
    and σ = radius / 2 as a sham site. The tumours differ in kind (ring-enhancing, solid, dark), so
    the amplitude is measured: the matched filter's contrast on the residual map, the clean slice
    minus the same slice without its tumour (`free`, from `render_patient`), and for a sham site the
    mean over the patient's tumour slices (what its tumour would show). A patient whose slices all
    miss the tumour, or an amplitude under `MIN_AMPLITUDE`, leaves it NaN: not judged. The
    background is the reading on the lesion-free slice (at a sham site, the clean slice itself): not
    the anatomy under a tumour, which the filter reads at up to several times the tumour's own
    contrast and of either sign, so a reconstruction that erased the tumour would keep it.
    """
    n_slices = len(masks) // len(tumours)
    yy, xx = np.mgrid[0:masks.shape[1], 0:masks.shape[2]]
    area = masks.reshape(len(masks), -1).sum(1).astype(float)
    present = area > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (masks * yy).reshape(len(masks), -1).sum(1) / area
        cx = (masks * xx).reshape(len(masks), -1).sum(1) / area
        spread = (masks * ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)).reshape(
            len(masks), -1).sum(1) / area / 2
    patient = np.repeat(tumours, n_slices, axis=0)
    y, x = np.where(present, cy, patient[:, 0]), np.where(present, cx, patient[:, 1])
    sigma = np.where(present, np.sqrt(np.maximum(spread, 0.25)), patient[:, 2] / 2)
    background = matched_contrast(free, y, x, sigma)
    measured = np.where(present, matched_contrast(images, y, x, sigma) - background, np.nan)
    with warnings.catch_warnings():  # a patient with no tumour slice has no amplitude: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        would = np.repeat(np.nanmean(measured.reshape(len(tumours), n_slices), axis=1), n_slices)
    amplitude = np.where(present, measured, would)
    amplitude = np.where(np.abs(amplitude) >= MIN_AMPLITUDE, amplitude, np.nan)
    return pd.DataFrame({"lesion": present.astype(float), "lesion_y": y, "lesion_x": x, "lesion_radius": sigma,
                         "lesion_amplitude": amplitude, "lesion_background": background},
                        columns=list(SITE_COLUMNS))


def generate_cohort(config: CohortConfig, seed: int, progress: Progress = silent,
                    workers: int | None = None) -> Cohort:
    """The whole cohort: one row per slice (image_id '<patient>-s<k>'), its image and tumour mask.

    The same for any `workers` (processes to render over; None: `workers.cohort_workers()`).
    """
    patients = sample_patients(config, seed)
    require_varied(patients, ("sex", "age_band"), "generated MRI cohort")
    stack = brain_stack(config.anatomy, config.image_size)  # built once here, inherited by the workers
    n = config.slices_per_subject
    render = partial(_render_patients, config.anatomy, config.image_size, n, seed)
    parts = list(render_chunks(render, patients, workers, CHUNK, progress, "generating MRI cohort"))
    images = np.concatenate([part[0] for part in parts])
    masks = np.concatenate([part[1] for part in parts])
    sites = pd.concat([part[2] for part in parts], ignore_index=True)
    rows = patients.loc[patients.index.repeat(n)].reset_index(drop=True)
    rows.insert(0, "image_id", [f"{s}-s{k}" for s in patients.subject_id for k in range(n)])
    rows["slice"] = np.tile(np.arange(n), len(patients))
    rows["tumour_pixels"] = masks.reshape(len(masks), -1).sum(1)
    rows = pd.concat([rows, sites], axis=1)
    return Cohort(rows, images, LABELS, f"synthetic MRI ({stack.name})", masks=masks)


class SyntheticBrainSource(CohortSource):
    """The generated brain-MRI cohort; one patient is re-rendered on its own for a replay of one slice."""

    labels = LABELS

    def load(self, progress: Progress = silent) -> Cohort:
        return generate_cohort(self.config, self.seed, progress)

    @cached_property
    def _patients(self) -> pd.DataFrame:
        return sample_patients(self.config, self.seed).set_index("subject_id", drop=False)

    @cached_property
    def _stack(self) -> BrainStack:
        return brain_stack(self.config.anatomy, self.config.image_size)

    def item(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        count = self.config.slices_per_subject
        subject, k = slice_of(image_id, self._patients.index, count)
        images, masks, _, _ = render_patient(self._stack, self._patients.loc[subject], count, self.seed)
        return images[k], masks[k]
