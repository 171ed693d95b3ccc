"""One 2D image per file, as exchanged with models run outside Tandem: NPY, NIfTI or 16-bit PNG.

`export-degraded` writes the degraded inputs this way and `import-reconstructions` reads the
user's outputs back the same way. NPY and NIfTI hold float32 values as they are (NPY through
`np.load(allow_pickle=False)`, never a pickle; NIfTI through nibabel, identity affine, the
array's axes as stored: rows, then columns). A PNG holds integers: Tandem writes 16-bit grayscale,
value × 65535 rounded (a quantisation step of 1/65535), and reads a grayscale PNG of 8 or 16 bits
as pixel / full scale, a fraction in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from recon_core.models.user_models import UserModelError

FORMATS = {"npy": ".npy", "nifti": ".nii.gz", "png": ".png"}
"""The formats Tandem writes, by name, and their file endings."""

READABLE = (".npy", ".nii.gz", ".nii", ".png")
"""The endings Tandem reads back (longest first where one ends another)."""

PNG_FULL_SCALE = 65535
"""The 16-bit PNG's full scale: its quantisation step is 1 / 65535."""


def write_image(path: Path, image: np.ndarray, fmt: str) -> Path:
    """Writes one (H, W) image in [0, 1] as `path` + the format's ending; returns the file's path."""
    target = path.with_name(path.name + FORMATS[fmt])
    values = np.asarray(image, dtype=np.float32)
    if fmt == "npy":
        np.save(target, values, allow_pickle=False)
    elif fmt == "nifti":
        import nibabel as nib

        nib.save(nib.Nifti1Image(values, np.eye(4)), str(target))
    else:
        from PIL import Image

        pixels = np.round(np.clip(values, 0.0, 1.0) * PNG_FULL_SCALE).astype(np.uint16)
        Image.fromarray(pixels).save(target, format="PNG")
    return target


def file_stem(image_id: str) -> str:
    """An image id as a file name (before its ending): percent-encoded, so an id that is a path stays one file."""
    return quote(image_id, safe="")


def image_id_of(path: Path) -> str | None:
    """The image id a file is named for (its name less a readable ending, decoded), or None for another kind."""
    ending = next((e for e in READABLE if path.name.endswith(e)), None)
    return None if ending is None else unquote(path.name.removesuffix(ending))


def read_image(path: Path) -> tuple[np.ndarray, bool]:
    """One file's values as float32 and whether they are fractions of a PNG's full scale (else as stored).

    An unreadable file, or a PNG that is not grayscale, is a UserModelError naming the file.
    """
    png = not path.name.endswith((".npy", ".nii", ".nii.gz"))
    try:
        if not png:
            values = _stored_array(path)
        else:
            from PIL import Image

            with Image.open(path) as picture:
                mode = picture.mode
                pixels = np.asarray(picture)
    except Exception as exc:  # numpy, nibabel and Pillow each raise their own kinds for a damaged file
        raise UserModelError(f"{path}: not a readable {path.suffix.lstrip('.').upper()} image "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not png:
        return _real(path, values), False
    scale = {"L": 255, "I;16": PNG_FULL_SCALE, "I;16B": PNG_FULL_SCALE, "I": PNG_FULL_SCALE}.get(mode)
    if scale is None:
        raise UserModelError(f"{path}: a PNG in mode {mode!r}; write 8- or 16-bit grayscale (one channel)")
    return pixels.astype(np.float32) / scale, True


def _stored_array(path: Path) -> np.ndarray:
    """An NPY (never unpickled) or NIfTI file's array, as stored."""
    if path.name.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


def _real(path: Path, values: np.ndarray) -> np.ndarray:
    """Stored values as float32; complex ones are refused (a cast would drop their imaginary parts unsaid)."""
    if np.iscomplexobj(values):
        raise UserModelError(f"{path}: holds complex values ({values.dtype}); write the real image (e.g. the "
                             "magnitude) as float32")
    return values.astype(np.float32)
