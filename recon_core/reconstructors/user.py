"""The user's own reconstructor (TorchScript, entry point or MONAI bundle), in tandem like the built-ins.

Tandem keeps its side of the contract declared in the config (image size, value range, inputs)
and checks the model's side on every batch: shape, finite values, range. A model that breaks
it, or raises, is a `UserModelError` naming the model, the level and the images; the runner
marks that cell failed and goes on with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from recon_core.config import StudyConfig, UserReconstructorConfig, stable_hash
from recon_core.models.losses import ImageLoss
from recon_core.models.user_models import UserModelError, checked_tensor, load_model, raised, resample
from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import FineTuning, Reconstructor


def named_ids(image_ids: Sequence[str] | None, shown: int = 3) -> str:
    """A few of a batch's image ids for an error message."""
    if not image_ids:
        return "a batch"
    listed = ", ".join(image_ids[:shown])
    return f"images {listed}" + (f" and {len(image_ids) - shown} more" if len(image_ids) > shown else "")


def checked_output(output: Any, shape: tuple[int, ...], value_range: tuple[float, float], tolerance: float,
                   what: str) -> torch.Tensor:
    """A model's output held to its contract: a tensor of `shape`, finite, within `value_range` (± tolerance of
    its span, clipped to it); anything else is a UserModelError saying what was wrong."""
    output = checked_tensor(output, shape, what, "{got} channels where {want} are expected")
    low, high = value_range
    slack = tolerance * (high - low)
    smallest, largest = float(output.min()), float(output.max())
    if smallest < low - slack or largest > high + slack:
        raise UserModelError(f"{what}: returned values in [{smallest:.4g}, {largest:.4g}], outside its declared "
                             f"value_range [{low:g}, {high:g}] (± {tolerance:g} of the span); declare the range "
                             "it really outputs")
    return output.clamp(low, high)


class DeclaredReconstructor(Reconstructor):
    """A reconstructor declared in `reconstructors.user`, named as declared; its outputs are determined by its
    declaration (the contract, and the SHA-256 of its files)."""

    def __init__(self, config: StudyConfig, device: torch.device, declared: UserReconstructorConfig) -> None:
        super().__init__(config, device)
        self.declared = declared
        self.name = declared.name

    def cache_key(self) -> str:
        """Its declaration: the files' SHA-256 and the contract (range, size, inputs) they are run under."""
        return stable_hash(self.declared)


class UserReconstructor(DeclaredReconstructor):
    """A model declared in `reconstructors.user`: one for every level, or one per level (`per_level`)."""

    def __init__(self, config: StudyConfig, device: torch.device, declared: UserReconstructorConfig) -> None:
        super().__init__(config, device, declared)
        where = {float(level): path for level, path in declared.per_level.items()} or {None: declared.path}
        self.models: dict[float | None, Callable[..., Any]] = {
            level: load_model(declared.source, Path(path).expanduser() if path else None, declared.entry_point,
                              device, self.what(level))
            for level, path in where.items()}

    def what(self, level: float | None) -> str:
        """How errors name this model (and the level, for per-level models)."""
        return f"reconstructor {self.name!r}" + ("" if level is None else f" (level {level:g})")

    def fine_tuning(self) -> FineTuning | None:
        """One network for every level that takes the image alone: fine-tuned through the declared contract (its
        size and value range), with MSE; None otherwise (a callable, per-level models, k-space inputs)."""
        model = self.models.get(None)
        declared = self.declared
        if not isinstance(model, torch.nn.Module) or declared.per_level or declared.inputs != "image":
            return None
        low, high = declared.value_range

        def output(batch) -> torch.Tensor:
            size = declared.image_size or batch.degraded.shape[-1]
            out = model(low + resample(batch.degraded.float(), size) * (high - low))
            return resample((out - low) / (high - low), batch.degraded.shape[-1])

        return FineTuning(model, output, ImageLoss("mse"), {"user reconstructor": self.cache_key()})

    @torch.no_grad()
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        declared = self.declared
        model = self.models.get(float(level), self.models.get(None))
        if model is None:
            raise UserModelError(f"{self.what(None)}: no model for level {level:g} (per_level names "
                                 f"{sorted(declared.per_level)})")
        size = declared.image_size or degraded.shape[-1]
        low, high = declared.value_range
        images = low + resample(degraded.to(self.device).float(), size) * (high - low)
        what = f"{self.what(None)} at level {level:g} on {named_ids(image_ids)}"
        try:
            if not isinstance(model, torch.nn.Module) and declared.source == "entry_point":
                output = model(images, physics, level, measurement)
            elif declared.inputs == "image+kspace":
                if measurement is None or not physics.measures_kspace:
                    raise UserModelError(f"{what}: inputs 'image+kspace' need MRI k-space physics")
                kspace = torch.view_as_real(measurement.to(self.device)).squeeze(1).permute(0, 3, 1, 2).float()
                mask = physics.mask(level, measurement.shape[-1]).to(self.device, torch.float32)[None, None]
                output = model(images, kspace, mask)
            else:
                output = model(images)
        except UserModelError:
            raise
        except Exception as exc:  # whatever the user's code raises, the cell fails with its words
            raise UserModelError(f"{what}: raised {raised(exc)}") from exc
        output = checked_output(output, tuple(images.shape), declared.value_range, declared.range_tolerance, what)
        return resample((output - low) / (high - low), degraded.shape[-1]).clamp(0, 1).to(degraded.device)
