"""Reconstructions made elsewhere: the degraded test inputs exported, the user's outputs checked and declared.

The route for models Tandem cannot run (another framework, a machine behind a hospital
firewall): `export_degraded` writes exactly the inputs the sweep feeds every reconstructor (each
image's noise is seeded per seed, image id and level, so they are the same numbers), with a
manifest saying what to write back; `check_reconstructions` holds a folder of the user's outputs
to the contract all at once before a sweep; `with_imported` declares that folder as a
reconstructor (source 'files'), whose SHA-256 then enters the config hash.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from recon_core.config import ConfigError, StudyConfig, UserReconstructorConfig, stable_hash
from recon_core.config_loader import from_dict
from recon_core.modalities import get_modality
from recon_core.models.batches import SplitData
from recon_core.models.image_files import FORMATS, PNG_FULL_SCALE, file_stem, write_image
from recon_core.models.user_models import UserModelError
from recon_core.physics import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors.imported import checked_file, level_folder, reconstruction_files
from recon_core.runner.inputs import input_batches
from recon_core.runner.study import prepare, split_data

MANIFEST = "manifest.json"

FFT_CONVENTION = ("k-space is the centred orthonormal 2D FFT of the clean image, fftshift(fft2(ifftshift(x), "
                  "norm='ortho')) over the last two axes (DC at [H//2, W//2]), complex64, with the entries "
                  "mask.npy leaves out set to zero; the degraded image is |ifft2c(kspace)| clipped to [0, 1]")


def sweep_inputs(config: StudyConfig, progress: Progress = silent) -> tuple[SplitData, Acquisition]:
    """The test split the sweep evaluates on, and the physics that degrades it (no model is built or trained)."""
    modality = get_modality(config.modality)
    cohort = modality.cohort_source(config).load(progress)
    return split_data(cohort, "test"), modality.build_physics(config)


def inputs_hash(config: StudyConfig) -> str:
    """What determines the degraded test inputs (seed, cohort with its data fingerprint, physics), as a hash."""
    return stable_hash(config.modality, config.seed, config.cohort, config.physics)


def export_degraded(config: StudyConfig, out: Path, fmt: str = "npy", progress: Progress = silent) -> dict[str, Any]:
    """Writes the test split's degraded inputs, level by level, into the new or empty folder `out`; returns the
    manifest (also written as `out/manifest.json`).

    Each level's inputs go to `out/<level>/<image id>.<ending>`; for k-space physics also each
    image's measured k-space (`<image id>.kspace.npy`) and the level's sampling mask (`mask.npy`).
    They are drawn on the host by `runner.inputs`, as the sweep draws them.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: choose one of {sorted(FORMATS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: not an empty folder; export into a new or empty one")
    try:  # before the cohort is loaded: a folder that cannot be made is said at once, in one line
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot make the export folder ({exc.strerror or exc})") from None
    config = prepare(config)
    data, physics = sweep_inputs(config, progress)
    ids = data.rows["image_id"].tolist()
    size = int(data.images.shape[-1])
    levels = [float(level) for level in config.physics.levels]
    for n, level in enumerate(levels):
        folder = level_folder(out, level)
        folder.mkdir(parents=True)
        for batch in input_batches(data, physics, level, config.evaluation.batch_size, torch.device("cpu"),
                                   workers=0):
            for j, image_id in enumerate(batch.ids):
                write_image(folder / file_stem(image_id), batch.degraded[j, 0].numpy(), fmt)
                if physics.measures_kspace:
                    np.save(folder / f"{file_stem(image_id)}.kspace.npy",
                            batch.measurement[j, 0].numpy().astype(np.complex64), allow_pickle=False)
        if physics.measures_kspace:
            np.save(folder / "mask.npy", physics.mask(level, size).numpy().astype(bool), allow_pickle=False)
        progress("exporting degraded inputs", n + 1, len(levels))
    manifest = _manifest(config, physics, fmt, levels, ids, size)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _manifest(config: StudyConfig, physics: Acquisition, fmt: str, levels: list[float], ids: list[str],
              size: int) -> dict[str, Any]:
    """What an export holds and what the user must write back, for people and for the import's checks."""
    ending = FORMATS[fmt]
    manifest: dict[str, Any] = {
        "config": config.name, "config_hash": config.config_hash(), "inputs_hash": inputs_hash(config),
        "modality": config.modality, "level_name": physics.level_name, "level_unit": physics.level_unit,
        "levels": [f"{level:g}" for level in levels], "image_ids": ids,
        "files": {image_id: f"{file_stem(image_id)}{ending}" for image_id in ids},
        "shape": [size, size], "dtype": "float32", "value_range": [0.0, 1.0], "format": fmt,
        "layout": f"<level>/<image id>{ending}, one (H, W) image per file (ids percent-encoded where they are not "
                  "plain names: see files)",
    }
    if fmt == "png":
        manifest["quantisation"] = (f"16-bit grayscale: pixel = round(value × {PNG_FULL_SCALE}), a step of "
                                    f"1/{PNG_FULL_SCALE}")
    if fmt == "nifti":
        manifest["nifti"] = "float32, identity affine, axes as stored (rows, then columns)"
    if physics.measures_kspace:
        manifest["kspace"] = {"files": "<level>/<image id>.kspace.npy (H, W) complex64 and <level>/mask.npy (H, W) "
                                       "bool", "convention": FFT_CONVENTION}
    manifest["write_back"] = (
        "Reconstruct every image of every level and write each into a folder of your own with the same layout and "
        f"names: <level>/<image id>.npy as a float (H, W) array{'' if fmt == 'npy' else f' (or {ending} as here)'}; "
        "values in [0, 1], or "
        "declare your range with --value-range LO HI (PNG pixels are read as fractions of full scale). Copy this "
        "manifest.json into that folder to have Tandem check the reconstructions were made from these inputs. Then: "
        "python -m recon_core import-reconstructions --config <this config> --from <your folder> --name <a name>")
    return manifest


def with_imported(config: StudyConfig, name: str, folder: Path,
                  value_range: tuple[float, float] = (0.0, 1.0)) -> StudyConfig:
    """The config with the folder declared as reconstructor `name` (source 'files') and swept; validated.

    A name already declared for that same folder is kept as it is (the snippet was added to the
    config), unless `value_range` is given otherwise than declared; declared otherwise, or a
    built-in's name, is a ConfigError.
    """
    declared = config.reconstructors.declared(name)
    if declared is not None:
        if declared.source == "files" and Path(declared.path).expanduser().resolve() == folder.resolve():
            given = (float(value_range[0]), float(value_range[1]))
            if given not in ((0.0, 1.0), tuple(declared.value_range)):
                raise ConfigError(f"--value-range {given[0]:g} {given[1]:g}: the config declares {name!r} with "
                                  f"value_range {list(declared.value_range)}; change it there, or leave the flag out")
            return config
        raise ConfigError(f"--name {name!r}: the config already declares a reconstructor {name!r} "
                          f"(source {declared.source!r}, path {declared.path!r}); choose another name")
    user = UserReconstructorConfig(name=name, source="files", path=str(folder.resolve()),
                                   value_range=(float(value_range[0]), float(value_range[1])))
    names = config.reconstructors.names if name in config.reconstructors.names else (*config.reconstructors.names,
                                                                                     name)
    data = replace(config, reconstructors=replace(config.reconstructors, names=names,
                                                  user=(*config.reconstructors.user, user))).to_dict()
    return from_dict(data)


def config_snippet(config: StudyConfig, name: str) -> str:
    """The YAML that declares reconstructor `name` in the config for good (its names and its `user` entry)."""
    user = config.reconstructors.declared(name)
    if user is None:
        raise ConfigError(f"reconstructor {name!r} is not declared in the config")
    entry: dict[str, Any] = {"name": user.name, "source": user.source, "path": user.path}
    if tuple(user.value_range) != (0.0, 1.0):
        entry["value_range"] = list(user.value_range)
    return yaml.safe_dump({"reconstructors": {"names": list(config.reconstructors.names), "user": [entry]}},
                          sort_keys=False, default_flow_style=None)


def check_reconstructions(config: StudyConfig, name: str, shown: int = 10) -> None:
    """Holds the folder of reconstructor `name` (source 'files') to the contract before a sweep: a file for every
    test image at every level, each of the right shape, finite and in range. Every problem at once, in one
    UserModelError naming the files (the first `shown`); nothing is stored."""
    config = prepare(config)
    declared = config.reconstructors.declared(name)
    if declared is None or declared.source != "files":
        raise ConfigError(f"reconstructor {name!r}: not declared with source 'files' in reconstructors.user")
    folder = Path(declared.path).expanduser()
    what = f"reconstructor {name!r}"
    if not folder.is_dir():
        raise UserModelError(f"{what}: {folder} is not a folder")
    problems = _manifest_problems(config, folder)
    data, _ = sweep_inputs(config)
    ids = data.rows["image_id"].tolist()
    size = declared.image_size or int(data.images.shape[-1])
    for level in (float(level) for level in config.physics.levels):
        files = reconstruction_files(level_folder(folder, level))
        if not files:
            problems.append(f"level {level:g}: no folder {level_folder(folder, level)} with reconstructions")
            continue
        missing = [i for i in ids if i not in files]
        if missing:
            listed = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            problems.append(f"level {level:g}: {len(missing)} of {len(ids)} images have no file in "
                            f"{level_folder(folder, level)} ({listed})")
        for image_id in ids:
            if image_id in files:
                try:
                    checked_file(files[image_id], size, declared, f"level {level:g}, image {image_id}")
                except UserModelError as exc:
                    problems.append(str(exc))
    if problems:
        more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
        raise UserModelError(f"{what}: {len(problems)} problem(s) with the reconstructions in {folder}: "
                             + "; ".join(problems[:shown]) + more)


def _manifest_problems(config: StudyConfig, folder: Path) -> list[str]:
    """A copied manifest's word on the inputs: a problem when they were exported from another study's inputs
    (`config` as prepared, with its data fingerprint)."""
    copied = folder / MANIFEST
    if not copied.is_file():
        return []
    try:
        made_from = json.loads(copied.read_text(encoding="utf-8")).get("inputs_hash")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return [f"{copied} is not an export manifest (JSON)"]
    expected = inputs_hash(config)
    if made_from != expected:
        return [f"{copied}: made from inputs {made_from}, but this config's inputs are {expected} (another seed, "
                "cohort or physics); export again with this config"]
    return []
