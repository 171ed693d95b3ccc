"""One rule for every path a user gives: it resolves (symlinks followed) inside an allowed folder, or is refused.

Used for the dashboard's config and dataset paths, manifest and metadata CSVs, the image paths a
manifest lists and NIfTI volumes, by the dashboard and the command line alike (configs named on
the command line are the user's own choice and are not confined). A refusal names the path
as the user wrote it and the allowed folders, and says nothing about what lies outside them:
the message is the same whether an outside file exists or not, and nothing outside is opened,
listed or stat-ed beyond resolving the path's own symlinks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOTS_VARIABLE = "TANDEM_DATA_ROOTS"
"""Colon-separated folders a user allows beyond the defaults (the dataset's own folder on the CLI)."""


class OutsideRootsError(ValueError):
    """A path that is not inside the allowed folders once resolved (or cannot be a path at all)."""


def extra_roots() -> list[Path]:
    """The folders in $TANDEM_DATA_ROOTS, resolved (one that cannot be resolved is left out)."""
    found = [_resolved(Path(p).expanduser()) for p in os.environ.get(ROOTS_VARIABLE, "").split(":")
             if p and "\x00" not in p]
    return [p for p in found if p is not None]


def root_folder(path: str | os.PathLike, what: str = "dataset folder") -> Path:
    """A folder the user named as a dataset's root, resolved; a NUL byte or a symlink loop is OutsideRootsError."""
    text = os.fspath(path)
    resolved = None if "\x00" in text else _resolved(Path(text).expanduser())
    if resolved is None:
        raise OutsideRootsError(f"{what} {text!r}: not a folder that can be read")
    return resolved


def confine(path: str | os.PathLike, roots: Iterable[str | os.PathLike], base: Path | None = None,
            what: str = "path") -> Path:
    """`path` resolved (relative ones against `base`), if it lies inside one of `roots`; else OutsideRootsError.

    A NUL byte, an absolute path elsewhere, `..` steps out, and a symlink (file or folder) whose
    target is elsewhere are all refused the same way.
    """
    text = os.fspath(path)
    if "\x00" in text or any("\x00" in os.fspath(r) for r in roots):
        raise OutsideRootsError(f"{what} {text!r}: a path cannot contain a NUL byte")
    allowed = [_resolved(Path(r).expanduser()) for r in roots]
    refusal = OutsideRootsError(f"{what} {text}: outside the folders Tandem may read "
                                f"({', '.join(str(r) for r in allowed if r) or 'none'}); "
                                f"set {ROOTS_VARIABLE} to allow another folder")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = (base or Path.cwd()) / candidate
    resolved = _resolved(candidate)
    if resolved is None or not any(root and resolved.is_relative_to(root) for root in allowed):
        raise refusal  # the same words for a loop, a missing file or an outside one: nothing to probe
    return resolved


def _resolved(path: Path) -> Path | None:
    """`path` with its symlinks followed; None for a symlink loop or a path the system cannot resolve."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


def confine_all(paths: Sequence[str], root: Path, what: str = "image path", shown: int = 5) -> list[Path]:
    """Every one of `paths` (relative to `root`) confined to `root`; one error naming how many escape, and which.

    All problems at once: a manifest with many bad rows is reported in one round, capped at `shown`.
    """
    resolved, outside = [], []
    for path in paths:
        try:
            resolved.append(confine(path, [root], base=root, what=what))
        except OutsideRootsError:
            outside.append(path)
    if outside:
        listed = ", ".join(repr(p) for p in outside[:shown]) + (f" and {len(outside) - shown} more"
                                                                 if len(outside) > shown else "")
        raise OutsideRootsError(f"{len(outside)} {what}(s) lead outside {root.resolve()} (a '..', an absolute "
                                f"path or a symlink elsewhere): {listed}")
    return resolved
