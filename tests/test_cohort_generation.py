"""Faster cohort generation leaves every image, mask and row as it was, for any worker count or chunking."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from recon_core.cohorts import synthetic_mri, synthetic_xray
from recon_core.cohorts.spline_zoom import cubic_zoom
from recon_core.cohorts.workers import WORKERS_ENV, cohort_workers
from recon_core.config import CohortConfig

XRAY = CohortConfig(anatomy="procedural", n_subjects=36, image_size=32)
MRI = CohortConfig(anatomy="procedural", n_subjects=12, slices_per_subject=4, image_size=48,
                   prevalence={"high_grade": 0.5}, age_band_edges=(58.0,))


def summary(images: np.ndarray) -> list[float]:
    """Total, index-weighted total and two pixels: values recorded from the generator before it was sped up."""
    a = images.astype(np.float64)
    weights = np.arange(1, len(a) + 1, dtype=np.float64)
    return [a.sum(), np.einsum("i,ihw->", weights, a), a[3, 10, 11], a[-1, 20, 17]]


@pytest.mark.parametrize("n,size", [(6, 32), (6, 48), (6, 256), (4, 37), (9, 64)])
def test_cubic_zoom_is_scipy_zoom_bit_for_bit(n, size):
    fields = np.random.default_rng(size).normal(0, 0.012, size=(3, n, n))
    want = np.stack([ndimage.zoom(f, size / n, order=3) for f in fields])
    assert cubic_zoom(fields, size).tobytes() == want.tobytes()


def test_xray_cohort_equals_the_old_generator_for_any_worker_count():
    one = synthetic_xray.generate_cohort(XRAY, seed=5, workers=1)
    several = synthetic_xray.generate_cohort(XRAY, seed=5, workers=3)  # other chunks, other processes
    assert one.images.tobytes() == several.images.tobytes()
    assert one.subjects.equals(several.subjects)
    np.testing.assert_allclose(summary(one.images), [15640.1370177418, 290690.95226962864, 0.22763244807720184,
                                                     0.6820967197418213], rtol=1e-9, atol=1e-7)
    source = synthetic_xray.SyntheticChestSource(XRAY, seed=5)
    assert source.item("cxr-00017")[0].tobytes() == one.images[17].tobytes()  # one subject alone, the same


def test_radiograph_cohort_equals_the_old_generator():
    cohort = synthetic_xray.generate_cohort(CohortConfig(anatomy="radiograph", n_subjects=24, image_size=64),
                                            seed=2, workers=2)
    np.testing.assert_allclose(summary(cohort.images), [74072.17635748675, 929676.3986099982, 0.761267900466919,
                                                        0.4566469192504883], rtol=1e-9, atol=1e-7)


def test_mri_cohort_equals_the_old_generator_for_any_worker_count():
    one = synthetic_mri.generate_cohort(MRI, seed=1, workers=1)
    several = synthetic_mri.generate_cohort(MRI, seed=1, workers=3)
    assert one.images.tobytes() == several.images.tobytes() and one.masks.tobytes() == several.masks.tobytes()
    assert one.subjects.equals(several.subjects)
    np.testing.assert_allclose(summary(one.images), [32299.977558055994, 790983.3792633764, 0.0,
                                                     0.9846667647361755], rtol=1e-9, atol=1e-7)
    index = np.arange(1, len(one.masks) + 1)[:, None, None]
    assert (int(one.masks.sum()), int((one.masks * index).sum())) == (1800, 43716)
    images, masks = synthetic_mri.SyntheticBrainSource(MRI, seed=1).item("p0007-s2")
    assert images.tobytes() == one.images[7 * 4 + 2].tobytes() and masks.tobytes() == one.masks[7 * 4 + 2].tobytes()


@pytest.mark.parametrize("value", ["two", "0", "-3", "1.5"])
def test_a_bad_worker_count_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(WORKERS_ENV, value)
    with pytest.raises(ValueError, match=f"TANDEM_COHORT_WORKERS must be a whole number.*{re.escape(repr(value))}"):
        cohort_workers()


def test_the_worker_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, " 3 ")
    assert cohort_workers() == 3
