"""Real-data MRI adapters on tiny files built on the fly: NIfTI folders and fastMRI HDF5."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from recon_core.cli import main
from recon_core.cohorts.demographics import CohortError
from recon_core.cohorts.fastmri_h5 import read_fastmri
from recon_core.cohorts.nifti_mri import load_nifti_cohort
from recon_core.config import CohortConfig, NiftiSourceConfig


def make_nifti_dataset(root, n=6, shape=(40, 48, 20), mask_shape=None):
    rng = np.random.default_rng(0)
    for i in range(n):
        pid = f"UCSF-{i:03d}"
        (root / pid).mkdir(parents=True, exist_ok=True)
        volume = rng.random(shape).astype(np.float32) * 100
        labels = np.zeros(mask_shape or shape, np.uint8)
        labels[10:20, 12:24, 5:15] = 2  # oedema
        labels[13:17, 15:21, 8:12] = 4  # enhancing
        nib.save(nib.Nifti1Image(volume, np.eye(4)), root / pid / f"{pid}_FLAIR.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4)), root / pid / f"{pid}_tumor_segmentation.nii.gz")
    pd.DataFrame({"ID": [f"UCSF-{i:03d}" for i in range(n)], "Sex": ["M", "F"] * (n // 2),
                  "Age": [35, 70, 50, 66, 41, 80][:n], "WHO CNS Grade": [4, 2, 4, 3, 4, 2][:n]}).to_csv(
        root / "metadata.csv", index=False)
    return root


def nifti_config(root, **kw):
    spec = NiftiSourceConfig(root=str(root), metadata_csv=str(root / "metadata.csv"), slice_range=(4, 16), **kw)
    return CohortConfig(source="nifti", image_size=32, nifti=spec, age_band_edges=(58.0,))


def test_nifti_folder_becomes_patients_of_slices_with_masks(tmp_path):
    cohort = load_nifti_cohort(nifti_config(make_nifti_dataset(tmp_path)), seed=0)
    assert cohort.images.shape == (72, 32, 32) and cohort.masks.shape == (72, 32, 32)
    assert cohort.images.min() >= 0 and cohort.images.max() <= 1
    rows = cohort.subjects
    assert rows.groupby("subject_id").size().eq(12).all()
    assert rows.drop_duplicates("subject_id").high_grade.tolist() == [1, 0, 1, 0, 1, 0]  # grade 4 = high
    assert rows.sex.nunique() == 2
    has_tumour = rows.tumour_pixels > 0
    assert has_tumour[rows.slice.between(5, 14)].all() and not has_tumour[rows.slice == 4].any()


def test_mask_shape_differing_from_the_image_is_named(tmp_path):
    root = make_nifti_dataset(tmp_path, mask_shape=(40, 48, 19))
    with pytest.raises(CohortError, match=r"UCSF-000_tumor_segmentation.nii.gz: mask shape \(40, 48, 19\) differs"):
        load_nifti_cohort(nifti_config(root), seed=0)


def test_slice_range_outside_the_volume_is_named(tmp_path):
    root = make_nifti_dataset(tmp_path)
    config = CohortConfig(source="nifti", image_size=32, age_band_edges=(58.0,), nifti=NiftiSourceConfig(
        root=str(root), metadata_csv=str(root / "metadata.csv"), slice_range=(10, 30)))
    with pytest.raises(CohortError, match=r"UCSF-000_FLAIR.nii.gz: slice range \[10, 30\) is outside the volume's 20"):
        load_nifti_cohort(config, seed=0)


def test_missing_volume_and_constant_sex_are_named(tmp_path):
    root = make_nifti_dataset(tmp_path)
    (root / "UCSF-003" / "UCSF-003_FLAIR.nii.gz").unlink()
    with pytest.raises(CohortError, match=r"UCSF-003_FLAIR.nii.gz: file of patient 'UCSF-003' not found"):
        load_nifti_cohort(nifti_config(root), seed=0)
    meta = pd.read_csv(root / "metadata.csv").assign(Sex="F")
    meta.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(CohortError, match=r"'sex' has a single value"):
        load_nifti_cohort(nifti_config(root), seed=0)


def make_fastmri(path, coils: int | None, reference: bool):
    rng = np.random.default_rng(0)
    image = np.zeros((3, 40, 40), np.float32)
    image[:, 10:30, 12:28] = 1.0
    shape = (3, 40, 40) if coils is None else (3, coils, 40, 40)
    coil_images = image if coils is None else image[:, None] * rng.uniform(0.5, 1, (1, coils, 1, 1))
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil_images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace.astype(np.complex64).reshape(shape))
        if reference:
            f.create_dataset("reconstruction_rss", data=image[:, 4:36, 4:36])
    return image


@pytest.mark.parametrize("coils", [None, 4])
def test_fastmri_slices_from_kspace_single_and_multi_coil(tmp_path, coils):
    image = make_fastmri(tmp_path / "f.h5", coils, reference=False)
    slices = read_fastmri(tmp_path / "f.h5", 40)
    assert slices.shape == (3, 40, 40) and slices.max() == pytest.approx(1, abs=1e-3)
    expected = image / image.max() if coils is None else None
    if expected is not None:
        assert np.allclose(slices, expected, atol=1e-4)
    else:  # root-sum-of-squares over coils keeps the object's shape
        assert np.corrcoef(slices.reshape(-1), image.reshape(-1))[0, 1] > 0.99


def test_fastmri_reference_image_is_preferred_and_missing_kspace_is_named(tmp_path):
    make_fastmri(tmp_path / "f.h5", 4, reference=True)
    assert read_fastmri(tmp_path / "f.h5", 32).shape == (3, 32, 32)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("image", data=np.zeros((2, 8, 8)))
    with pytest.raises(CohortError, match=r"bad.h5: no 'kspace' dataset; found \['image'\]"):
        read_fastmri(tmp_path / "bad.h5", 32)


def test_fastmri_quality_cli_prints_a_table(tmp_path, capsys):
    make_fastmri(tmp_path / "knee.h5", 4, reference=False)
    from tests.conftest import ROOT

    code = main(["fastmri-quality", str(tmp_path / "knee.h5"), "--config", str(ROOT / "configs" / "tiny-mri.yaml"),
                 "--reconstructors", "zero_filled", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "knee.h5" in out and "zero_filled" in out
    values = [float(line.split()[3]) for line in out.splitlines()[1:]]
    assert len(values) == 2 and values[0] > values[1]  # 4× better than 8×
    assert main(["fastmri-quality", str(tmp_path / "nothing.h5"), "--config",
                 str(ROOT / "configs" / "tiny-mri.yaml")]) == 2
