"""Reconstructions made outside Tandem, read back by image id and level: the route for models Tandem cannot run.

`export-degraded` writes the test split's degraded inputs as `<folder>/<level>/<image id>.npy`
(or .nii.gz, .png; an id percent-encoded where it is not a plain name); the user runs their model
wherever it lives and writes one reconstruction per input, same names, into a folder of their
own (`path`). Here each batch's files are read and held to the same contract as a model's output:
one (H, W) image of the study's size (or the declared `image_size`), finite, within `value_range`
(± `range_tolerance` of its span, clipped to it), mapped back to [0, 1]. A missing file or a broken
one is a UserModelError naming the reconstructor, the level, the image and the file; the runner
fails that cell only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from recon_core.config import StudyConfig, UserReconstructorConfig
from recon_core.models.image_files import file_stem, image_id_of, read_image
from recon_core.models.user_models import UserModelError, resample
from recon_core.physics.base import Acquisition
from recon_core.reconstructors.user import DeclaredReconstructor, checked_output, named_ids


def level_folder(folder: Path, level: float) -> Path:
    """Where a level's files live: `<folder>/<level>` with the level written as `:g` (3000, 300, 4, 0.5)."""
    return folder / f"{float(level):g}"


def reconstruction_files(folder: Path) -> dict[str, list[Path]]:
    """A level folder's readable files by the image id they are named for (several when one id has two files);
    empty when the folder does not exist."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        image_id = image_id_of(path)
        if image_id is not None and path.is_file():
            found.setdefault(image_id, []).append(path)
    return found


def checked_file(files: list[Path], size: int, declared: UserReconstructorConfig, what: str) -> np.ndarray:
    """One image's reconstruction from its file, held to the contract: (size, size) float32 in [0, 1].

    Singleton axes are dropped ((1, H, W) or (H, W, 1) is one image). NPY and NIfTI values are
    mapped from `value_range` to [0, 1]; a PNG's pixels are fractions of its full scale already.
    Anything else is a UserModelError naming the file and what is wrong with it.
    """
    if len(files) > 1:
        raise UserModelError(f"{what}: {len(files)} files for one image ({', '.join(str(f) for f in files)}); "
                             "keep one")
    path = files[0]
    values, fraction = read_image(path)
    if tuple(d for d in values.shape if d != 1) != (size, size):
        raise UserModelError(f"{what}: {path} holds an array of shape {list(values.shape)}, expected "
                             f"[{size}, {size}] (one image, rows × columns)")
    low, high = (0.0, 1.0) if fraction else declared.value_range
    shape = (1, 1, size, size)
    checked = checked_output(torch.from_numpy(values.reshape(shape)), shape, (low, high), declared.range_tolerance,
                             f"{what}: {path}")
    return ((checked - low) / (high - low)).clamp(0, 1)[0, 0].numpy()


class ImportedReconstructions(DeclaredReconstructor):
    """A reconstructor declared with source 'files': its outputs are read from `path`, not computed."""

    def __init__(self, config: StudyConfig, device: torch.device, declared: UserReconstructorConfig) -> None:
        super().__init__(config, device, declared)
        self.folder = Path(declared.path).expanduser()
        self.files: dict[float, dict[str, list[Path]]] = {}
        """Each level's files by image id, listed once when the level is first asked for."""

    @torch.no_grad()
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        what = f"reconstructor {self.name!r} at level {level:g}"
        if image_ids is None or len(image_ids) != degraded.shape[0]:
            raise UserModelError(f"{what}: imported reconstructions are found by image id; this batch came without "
                                 "its ids")
        folder = level_folder(self.folder, level)
        if float(level) not in self.files:
            self.files[float(level)] = reconstruction_files(folder)
        files = self.files[float(level)]
        missing = [i for i in image_ids if i not in files]
        if missing:
            raise UserModelError(f"{what}: no reconstruction of {named_ids(missing)} in {folder} (expected "
                                 f"{folder / file_stem(missing[0])}.npy, .nii.gz or .png)")
        size = self.declared.image_size or degraded.shape[-1]
        images = np.stack([checked_file(files[i], size, self.declared, f"{what}, image {i}") for i in image_ids])
        return resample(torch.from_numpy(images)[:, None], degraded.shape[-1]).clamp(0, 1).to(degraded.device)
