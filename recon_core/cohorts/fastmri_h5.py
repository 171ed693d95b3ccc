"""Reads fastMRI HDF5 files (single- or multi-coil knee/brain) as fully sampled magnitude slices.

A file holds `kspace` (slices, [coils,] H, W, complex) and usually `reconstruction_rss`
(multi-coil) or `reconstruction_esc` (single-coil), the reference images at 320 × 320. The
reference image is used when present; otherwise each slice is rebuilt from `kspace` as the
root-sum-of-squares over coils of the centred inverse FFT's modulus (MONAI's
`root_sum_of_squares`), centre-cropped to a square. Slices are scaled by the volume's maximum
into [0, 1] and resized to the study's size. fastMRI has no labels or demographics: these
files serve image-quality evaluation (`python -m recon_core fastmri-quality`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.apps.reconstruction.mri_utils import root_sum_of_squares
from skimage.transform import resize

from recon_core.cohorts.demographics import CohortError
from recon_core.physics.mri_kspace import ifft2c, magnitude

REFERENCES = ("reconstruction_rss", "reconstruction_esc")


def _centre_square(images: np.ndarray) -> np.ndarray:
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return images[..., top:top + side, left:left + side]


def read_fastmri(path: str | Path, size: int) -> np.ndarray:
    """(slices, size, size) float32 magnitude images in [0, 1] from one fastMRI HDF5 file."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except FileNotFoundError:
        raise CohortError(f"{path}: fastMRI file not found") from None
    except OSError as exc:
        raise CohortError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        if "kspace" not in handle:
            raise CohortError(f"{path}: no 'kspace' dataset; found {sorted(handle.keys())} — not a fastMRI file")
        reference = next((name for name in REFERENCES if name in handle), None)
        if reference is not None:
            images = np.asarray(handle[reference], dtype=np.float32)
        else:
            kspace = torch.from_numpy(np.asarray(handle["kspace"]))
            if kspace.ndim not in (3, 4) or not kspace.is_complex():
                raise CohortError(f"{path}: 'kspace' must be complex (slices, [coils,] H, W), got "
                                  f"{tuple(kspace.shape)} {kspace.dtype}")
            coil_images = magnitude(ifft2c(kspace)).numpy()
            images = coil_images if kspace.ndim == 3 else root_sum_of_squares(coil_images, spatial_dim=1)
    images = _centre_square(np.asarray(images, dtype=np.float32))
    peak = float(images.max())
    if peak <= 0:
        raise CohortError(f"{path}: images are all zero")
    return np.stack([resize(s / peak, (size, size), anti_aliasing=True, preserve_range=True)
                     for s in images]).clip(0, 1).astype(np.float32)
