"""Generates the embedded chest X-ray cohort: subjects, findings and demographics drawn into the image.

Findings a classifier has to look at: cardiomegaly (an enlarged cardiac silhouette), pleural
effusion (fluid blunting a costophrenic angle), nodule (a small round opacity in a lung).
Demographics change the image: a breast soft-tissue shadow for female subjects, bone contrast
that falls and heart size that grows with age, a larger chest for male subjects.
Every image has a known lesion site (`lesion_site`): its nodule, or for an image without one a
sham site drawn the same way from a generator of its own, so the hallucination check knows
where a lesion is and where none is. A subject's random parameters are drawn first
(`draw_subject`, in the order the cohort has always drawn them) and painted after
(`paint_subject`), so the site is computed from the same draws without touching the images.
Deterministic per (seed, subject).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from recon_core.metrics.lesions import SITE_COLUMNS, matched_contrast
from recon_core.progress import Progress, silent
from recon_core.seeding import numpy_rng

LABELS = ("cardiomegaly", "effusion", "nodule")
CHUNK = 100
"""Most subjects rendered per hand-off (and per progress report)."""
NODULE_HEIGHT = 0.4
"""A nodule's peak opacity per unit of `nodule_contrast`, added before the exposure curve."""



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


@dataclass(frozen=True)
class Draws:
    """One subject's random parameters, drawn in the generator's fixed order (`draw_subject`)."""

    effusion: tuple[tuple[int, float], ...]
    """(side, fluid height) of each effusion drawn."""
    nodule: tuple[float, float, float] | None
    """(x, y, σ) of the nodule in template coordinates, None without one."""
    scale: float
    angle: float
    shift: np.ndarray
    elastic: np.ndarray
    """(2, 6, 6) coarse elastic field, zoomed to the image size."""
    gamma: float
    gain: float
    offset: float


def _place_in_lung(template: Template, rng: np.random.Generator) -> tuple[float, float, float]:
    """(x, y, σ) of a nodule somewhere inside a lung field, in template coordinates."""
    cx, cy, rx, ry = template.landmarks.lungs[int(rng.integers(2))]
    ang, rad = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.7))
    return cx + rad * rx * np.cos(ang), cy + rad * ry * np.sin(ang), rng.uniform(0.02, 0.03)


def draw_subject(template: Template, row: pd.Series, seed: int) -> Draws:
    """The subject's random parameters from its own generator, in the order the cohort has always drawn them."""
    rng = numpy_rng(seed, "render", row["subject_id"])
    effusion: list[tuple[int, float]] = []
    if row["effusion"] == 1:
        sides = [0, 1] if rng.random() < 0.4 else [int(rng.integers(2))]
        effusion = [(side, rng.uniform(0.09, 0.15)) for side in sides]
    nodule = _place_in_lung(template, rng) if row["nodule"] == 1 else None
    female = row["sex"] == "F"
    scale = rng.uniform(0.95, 1.03) * (1.03 if not female else 0.98)
    angle = np.deg2rad(rng.uniform(-4, 4))
    shift = rng.uniform(-0.025, 0.025, size=2)
    elastic = rng.normal(0, 0.012, size=(2, 6, 6))
    gamma = rng.uniform(0.85, 1.15)  # exposure and processing differ between acquisitions
    gain = rng.uniform(0.92, 1.0)
    return Draws(tuple(effusion), nodule, scale, angle, shift, elastic, gamma, gain, rng.uniform(0.0, 0.04))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx) template coordinates in [0, 1] of every pixel."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return yy, xx


def _blob(size: int, nodule: tuple[float, float, float]) -> np.ndarray:
    """A unit-height Gaussian nodule in template coordinates."""
    yy, xx = _grid(size)
    nx, ny, sigma = nodule
    return np.exp(-((xx - nx) ** 2 + (yy - ny) ** 2) / (2 * sigma ** 2))


def _coordinates(template: Template, row: pd.Series, draws: Draws) -> tuple[np.ndarray, np.ndarray]:
    """(qy, qx): where each final pixel samples the template, one map of subject affine, elastic warp and cardiac
    magnification."""
    size = template.image.shape[0]
    lm = template.landmarks
    yy, xx = _grid(size)
    u, v = xx - 0.5, yy - 0.5
    cos, sin = np.cos(draws.angle), np.sin(draws.angle)
    qx = (cos * u - sin * v) / draws.scale + 0.5 + draws.shift[0]
    qy = (sin * u + cos * v) / draws.scale + 0.5 + draws.shift[1]
    field_x, field_y = cubic_zoom(draws.elastic, size)  # smooth elastic warp
    qx, qy = qx + field_x, qy + field_y
    hx, hy = lm.heart_center
    hrx, hry = lm.heart_radius
    magnify = max(0.0, 0.02 + 0.0025 * (float(row["age"]) - 40))  # hearts grow a little with age
    if row["cardiomegaly"] == 1:
        magnify += 0.3 * row["cardiomegaly_contrast"]
    dx, dy = (qx - hx) / (1.4 * hrx), (qy - hy) / (1.4 * hry)
    shrink = 1 - min(magnify, 0.6) * np.exp(-(dx ** 2 + dy ** 2) / 2)
    return hy + (qy - hy) * shrink, hx + (qx - hx) * shrink


def _warp(image: np.ndarray, coordinates: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A template-space image carried into the subject's final geometry."""
    size = image.shape[0]
    qy, qx = coordinates
    return ndimage.map_coordinates(image, [qy * (size - 1), qx * (size - 1)], order=1, mode="nearest")


def paint_subject(template: Template, row: pd.Series, draws: Draws, nodule: bool = True) -> np.ndarray:
    """The subject's radiograph in [0, 1] from its draws; `nodule=False` leaves its nodule out (the same otherwise)."""
    size = template.image.shape[0]
    lm = template.landmarks
    yy, xx = _grid(size)
    age, female = float(row["age"]), row["sex"] == "F"

    bone = np.clip(1.25 - 0.008 * (age - 30), 0.55, 1.3)  # bone contrast falls with age
    image = template.image + (bone - 1.0) * template.detail
    if female:  # breast soft-tissue shadow over the lower lateral fields
        for cx, cy in ((0.24, 0.74), (0.77, 0.76)):
            r = np.sqrt(((xx - cx) / 0.2) ** 2 + ((yy - cy) / 0.14) ** 2)
            image = image + 0.10 * (1 / (1 + np.exp((r - 1) / 0.08))) * (yy > cy - 0.1)
    for side, height in draws.effusion:  # fluid rising laterally: the costophrenic angle is blunted
        cpx, cpy = lm.costophrenic[side]
        lateral = np.exp(-((xx - cpx) / 0.2) ** 2)
        surface = cpy - height * (0.35 + 0.65 * lateral)  # meniscus: higher laterally
        fluid = (1 / (1 + np.exp(-(yy - surface) / 0.012))) * (1 / (1 + np.exp((yy - cpy - 0.02) / 0.015)))
        same_side = 1 / (1 + np.exp((0.5 - xx) / 0.02)) if side else 1 / (1 + np.exp((xx - 0.5) / 0.02))
        image = image + 0.30 * row["effusion_contrast"] * fluid * same_side * (0.3 + 0.7 * lateral)
    if draws.nodule is not None and nodule:  # a round opacity somewhere inside a lung field
        image = image + NODULE_HEIGHT * row["nodule_contrast"] * _blob(size, draws.nodule)
    warped = _warp(image, _coordinates(template, row, draws))
    warped = np.clip(warped, 0, 1) ** draws.gamma
    warped = warped * draws.gain + draws.offset
    return np.clip(warped, 0, 1).astype(np.float32)


def render_subject(template: Template, row: pd.Series, seed: int) -> np.ndarray:
    """Draws one subject's radiograph in [0, 1] from the template and the row's findings."""
    return paint_subject(template, row, draw_subject(template, row, seed))


def lesion_site(template: Template, row: pd.Series, seed: int, draws: Draws | None = None,
                image: np.ndarray | None = None) -> dict[str, float]:
    """The subject's known lesion site in the final image (`metrics.lesions.SITE_COLUMNS`): its nodule, or a sham site.

    The nodule (or, for a subject without one, a sham nodule placed by its own generator
    `numpy_rng(seed, "sham-lesion", subject_id)`, so the cohort's draws are untouched) is carried
    through the subject's own warp; the site is the warped blob's centroid and its radius the
    blob's σ there (from the second moment), in pixels. The amplitude is the height the nodule
    adds (or would add) before the exposure curve; the background is the matched filter's reading
    at the site on the subject painted without its nodule (`image`, the subject's radiograph,
    saves painting a subject that has none).
    """
    draws = draw_subject(template, row, seed) if draws is None else draws
    size = template.image.shape[0]
    nodule = draws.nodule or _place_in_lung(template, numpy_rng(seed, "sham-lesion", row["subject_id"]))
    blob = _warp(_blob(size, nodule), _coordinates(template, row, draws))
    weights = np.where(blob > 0.05, blob, 0.0)  # the blob itself, not the far tails clamped at the border
    yy, xx = np.mgrid[0:size, 0:size]
    total = weights.sum()
    cy, cx = (weights * yy).sum() / total, (weights * xx).sum() / total
    spread = (weights * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / total / 2
    free = image if image is not None and draws.nodule is None else paint_subject(template, row, draws, nodule=False)
    return {"lesion": float(draws.nodule is not None), "lesion_y": float(cy), "lesion_x": float(cx),
            "lesion_radius": float(np.sqrt(spread)),
            "lesion_amplitude": float(NODULE_HEIGHT * row["nodule_contrast"]),
            "lesion_background": float(matched_contrast(free[None], [cy], [cx], [np.sqrt(spread)])[0])}


def _render_rows(anatomy: str, size: int, seed: int, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """(len(rows), size, size) images of a chunk of subjects and their lesion sites: one worker's share of
    `generate_cohort`."""
    template = template_for(anatomy, size)
    images = np.empty((len(rows), size, size), np.float32)
    sites = []
    for i, (_, row) in enumerate(rows.iterrows()):
        draws = draw_subject(template, row, seed)
        images[i] = paint_subject(template, row, draws)
        sites.append(lesion_site(template, row, seed, draws, images[i]))
    return images, pd.DataFrame(sites, index=rows.index, columns=list(SITE_COLUMNS))


def generate_cohort(config: CohortConfig, seed: int, progress: Progress = silent,
                    workers: int | None = None) -> Cohort:
    """The embedded synthetic chest X-ray cohort, deterministic per seed and the same for any `workers`.

    `workers`: processes to render over (None: `workers.cohort_workers()`, the CPUs available).
    """
    subjects = sample_subjects(config, seed)
    require_varied(subjects, ["sex", "age_band"], f"synthetic cohort (n={config.n_subjects})")
    template_for(config.anatomy, config.image_size)  # built once here, inherited by the workers
    render = partial(_render_rows, config.anatomy, config.image_size, seed)
    parts = list(render_chunks(render, subjects, workers, CHUNK, progress, "generating cohort"))
    images = np.concatenate([part[0] for part in parts])
    subjects = pd.concat([subjects, pd.concat([part[1] for part in parts])], axis=1)
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
