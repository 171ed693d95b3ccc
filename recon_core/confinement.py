"""One rule for every path a user gives: it resolves (symlinks followed) inside an allowed folder, or is refused.

Used for configs, dataset folders, manifest CSVs, the image paths a manifest lists, NIfTI
volumes and model files, by the dashboard and the command line alike. A refusal names the path
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
    """The folders in $TANDEM_DATA_ROOTS, resolved."""
    return [Path(p).expanduser().resolve() for p in os.environ.get(ROOTS_VARIABLE, "").split(":") if p]


def confine(path: str | os.PathLike, roots: Iterable[str | os.PathLike], base: Path | None = None,
            what: str = "path") -> Path:
    """`path` resolved (relative ones against `base`), if it lies inside one of `roots`; else OutsideRootsError.

    A NUL byte, an absolute path elsewhere, `..` steps out, and a symlink (file or folder) whose
    target is elsewhere are all refused the same way.
    """
    text = os.fspath(path)
    allowed = [Path(r).expanduser().resolve() for r in roots]
    shown = ", ".join(map(str, allowed)) or "none"
    if "\x00" in text:
        raise OutsideRootsError(f"{what} {text!r}: a path cannot contain a NUL byte")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = (base or Path.cwd()) / candidate
    resolved = candidate.resolve()
    if not any(resolved.is_relative_to(root) for root in allowed):
        raise OutsideRootsError(f"{what} {text}: outside the folders Tandem may read ({shown}); "
                                f"set {ROOTS_VARIABLE} to allow another folder")
    return resolved


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
