"""Models made outside Tandem: loaded offline from a TorchScript file, a Python entry point or a MONAI bundle.

Three routes, one result: a callable on tensors, and the SHA-256 of what it was loaded from
(the file; a bundle's or an entry point's files, in a fixed order), which goes into the config
hash so a changed file is a new run. Nothing is unpickled: TorchScript files go through
`torch.jit.load`, a bundle's weights through `torch.load(weights_only=True)` and a strict
`load_state_dict`, so a checkpoint for another network is an error, never half-loaded weights.
An entry point and a bundle's `network_def` run code from this environment by design (the user's
own package), as any import does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


class UserModelError(ValueError):
    """A user's model that cannot be loaded or broke its contract; the message names the model and the problem."""


BUNDLE_CONFIGS = ("inference.json", "inference.yaml", "inference.yml")
"""A bundle's network definition, in the order looked for (MONAI's inference config names)."""


def resample(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) images at (size, size), as a user model's contract asks: bilinear, antialiased when shrinking;
    unchanged at their own size (so a model at the study's size sees exactly Tandem's pixels)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < images.shape[-1])


def raised(exc: Exception) -> str:
    """What a user's model raised, in one line: its type and first line; TorchScript's own error from the end of
    the interpreter's trace ('RuntimeError: …'), which it puts after a header and the scripted code."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, torch.jit.Error) and lines:
        return lines[-1][:300]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def checked_tensor(output: Any, shape: tuple[int, ...], what: str, axis: str) -> torch.Tensor:
    """A user model's output as a float tensor of `shape` with finite values, else a UserModelError saying what was
    wrong; `axis` words a mismatch on the second axis ('{got} channels where {want} are expected')."""
    if not isinstance(output, torch.Tensor):
        raise UserModelError(f"{what}: returned {type(output).__name__}, not a tensor of shape {list(shape)}")
    if tuple(output.shape) != shape:
        mismatch = "" if output.ndim != len(shape) or output.shape[1] == shape[1] else \
            " (" + axis.format(got=output.shape[1], want=shape[1]) + ")"
        raise UserModelError(f"{what}: returned shape {list(output.shape)}, expected {list(shape)}{mismatch}")
    output = output.float()
    finite = torch.isfinite(output)
    if not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise UserModelError(f"{what}: returned NaN or Inf values in {bad} of {shape[0]} images")
    return output


def file_sha256(path: Path) -> str:
    """The SHA-256 of one file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(files: list[tuple[str, Path]]) -> str:
    """One SHA-256 over named files: each file's name and hash, in the given order (a manifest's hash)."""
    manifest = "\n".join(f"{name} {file_sha256(path)}" for name, path in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def folder_sha256(folder: Path, what: str) -> str:
    """One SHA-256 over every file under a folder (relative names, sorted): a folder of reconstructions' hash."""
    files = sorted((str(f.relative_to(folder)), f) for f in _existing(folder, what, folder=True).rglob("*")
                   if f.is_file())
    if not files:
        raise UserModelError(f"{what}: {folder} holds no files")
    return files_sha256(files)


def bundle_files(folder: Path, what: str) -> tuple[Path, Path]:
    """A bundle folder's network config and its weights: models/model.pt, else models/model.ts; without a
    network config, models/model.ts (the TorchScript needs none)."""
    if not folder.is_dir():
        raise UserModelError(f"{what}: MONAI bundle {folder} is not a folder (it needs configs/ and models/)")
    config = next((folder / "configs" / name for name in BUNDLE_CONFIGS if (folder / "configs" / name).is_file()), None)
    order = ("model.pt", "model.ts") if config else ("model.ts", "model.pt")
    weights = next((folder / "models" / name for name in order if (folder / "models" / name).is_file()), None)
    if weights is None:
        raise UserModelError(f"{what}: MONAI bundle {folder} has no models/model.pt or models/model.ts")
    if config is None and weights.suffix != ".ts":
        raise UserModelError(f"{what}: MONAI bundle {folder} has no configs/inference.json or .yaml defining "
                             "network_def for models/model.pt")
    return config or weights, weights


def source_sha256(source: str, path: Path | None, entry_point: str, what: str) -> str:
    """The content hash of a user model: its file, its bundle's config and weights, or its entry point's module file.

    An entry point's hash covers its module's source file (and `path`, the weights it is handed,
    when given): an edited factory is a new run. Code it imports from elsewhere is not covered.
    """
    if source == "entry_point":
        files = [("module", entry_module_file(entry_point, what))]
        return files_sha256(files + ([("weights", _existing(path, what))] if path else []))
    if source == "bundle":
        config, weights = bundle_files(_existing(path, what, folder=True), what)
        return files_sha256([(config.name, config), (weights.name, weights)])
    if source == "files":
        return folder_sha256(path, what)
    return file_sha256(_existing(path, what))


def _existing(path: Path | None, what: str, folder: bool = False) -> Path:
    """`path` when it exists as a file (or folder); else an error naming the model."""
    if path is None or not (path.is_dir() if folder else path.is_file()):
        raise UserModelError(f"{what}: {path} is not a {'folder' if folder else 'file'}")
    return path


def entry_module_file(entry_point: str, what: str) -> Path:
    """The file of an entry point's module, found without running it; an error when it cannot be imported."""
    module = entry_point.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        spec, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "no such module on the Python path"
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        raise UserModelError(f"{what}: entry point {entry_point!r} does not import ({reason}); install its package "
                             "in this environment or add its folder to PYTHONPATH")
    return Path(spec.origin)


def load_entry_point(entry_point: str, path: Path | None, what: str) -> Callable[..., Any]:
    """What an entry point's factory returns: `factory()`, or `factory(path)` when a weights path is given."""
    module_name, _, attribute = entry_point.partition(":")
    entry_module_file(entry_point, what)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module failed while importing: say so, with its error
        raise UserModelError(f"{what}: entry point {entry_point!r} does not import "
                             f"({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserModelError(f"{what}: entry point {entry_point!r}: module {module_name} has no function "
                             f"{attribute!r}")
    try:
        model = factory(str(path)) if path else factory()
    except Exception as exc:
        raise UserModelError(f"{what}: entry point {entry_point!r} raised while building the model "
                             f"({type(exc).__name__}: {exc})") from exc
    if not callable(model):
        raise UserModelError(f"{what}: entry point {entry_point!r} returned {type(model).__name__}, not an "
                             "nn.Module or a callable")
    return model


def load_torchscript(path: Path, device: torch.device, what: str) -> torch.jit.ScriptModule:
    """A TorchScript file through `torch.jit.load` (never pickle); anything else is an error naming the file."""
    _existing(path, what)
    try:
        return torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError or ValueError, with long C++ traces, for non-archives
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserModelError(f"{what}: {path} is not a TorchScript file ({first[:200]}); save the model with "
                             "torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, example), path)"
                             ) from None


def load_bundle(folder: Path, device: torch.device, what: str) -> torch.nn.Module:
    """A MONAI bundle, offline: `network_def` of its inference config with models/model.pt loaded strictly,
    or its TorchScript models/model.ts."""
    from monai.bundle import ConfigParser

    config, weights = bundle_files(_existing(folder, what, folder=True), what)
    if weights.suffix == ".ts":
        return load_torchscript(weights, device, what)
    parser = ConfigParser()
    try:
        parser.read_config(str(config))
        parser["bundle_root"] = str(folder)
        net = parser.get_parsed_content("network_def")
    except Exception as exc:
        raise UserModelError(f"{what}: bundle config {config} does not build its network_def "
                             f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(net, torch.nn.Module):
        raise UserModelError(f"{what}: bundle config {config}: network_def is {type(net).__name__}, not an nn.Module")
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as exc:
        raise UserModelError(f"{what}: {weights} is not a weights file torch.load can read safely "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a checkpoint that wraps the weights
        state = state["model"]
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserModelError(f"{what}: {weights} does not fit the bundle's network_def ({str(exc)[:300]})") from None
    return net.to(device).eval()


def load_model(source: str, path: Path | None, entry_point: str, device: torch.device,
               what: str) -> Callable[..., Any]:
    """The user's model from its source, on `device` where it is a module, in eval mode."""
    if source == "torchscript":
        model = load_torchscript(_existing(path, what), device, what)
    elif source == "bundle":
        model = load_bundle(_existing(path, what, folder=True), device, what)
    elif source == "entry_point":
        model = load_entry_point(entry_point, path, what)
    else:
        raise UserModelError(f"{what}: source {source!r} is not a model (torchscript, entry_point or bundle)")
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    return model
