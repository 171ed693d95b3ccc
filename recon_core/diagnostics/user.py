"""The user's own diagnostic models (TorchScript, entry point or MONAI bundle) in the built-ins' place.

Tandem keeps its side of the contract declared in `diagnostic.classifier_model` or
`segmenter_model`: it hands the model (B, channels, size, size) images, the [0, 1] images
resampled to `image_size`, normalised as (x − mean) / std and repeated over the channels. It
checks the model's side on every batch: a tensor of the declared shape (one output per declared
label or class), finite, within [0, 1] where the model says it returns probabilities. A model
that breaks it, or raises, is a `UserModelError` naming the model and the problem; in a sweep the
runner marks that cell failed and goes on with the others. Nothing is trained: the model comes
trained, and its file's SHA-256 (in the config hash) is its weights key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon_core.config import StudyConfig, UserDiagnosticConfig, stable_hash
from recon_core.diagnostics.classifier import Classifier
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.diagnostics.task import TaskModel, TaskOutput
from recon_core.metrics.segmentation import segmentation_quality
from recon_core.models.batches import SplitData
from recon_core.models.contract import TrainableModel, TrainingPlan
from recon_core.models.user_models import UserModelError, checked_tensor, load_model, raised, resample
from recon_core.progress import Progress, silent

PROBABILITY_EPS = 1e-6
"""A probability is clamped to [eps, 1 − eps] before its logit is taken (evidence of a model returning
probabilities), so a saturated 0 or 1 still has a finite, differentiable logit."""


def described(role: str, declared: UserDiagnosticConfig) -> str:
    """How errors name a user's diagnostic model: its config key and where it was read from."""
    where = declared.entry_point if declared.source == "entry_point" else declared.path
    return f"diagnostic.{role} ({declared.source} {where})"


class UserNet(torch.nn.Module):
    """The user's model behind Tandem's side of the contract: (B, 1, H, W) [0, 1] images in, checked outputs out.

    Called, it answers logits (the built-in networks' currency, which attributions and frozen-model
    training expect); `outputs` gives what the model returned, checked, in the task model's order.
    """

    def __init__(self, model: Callable[..., Any], declared: UserDiagnosticConfig, what: str, picked: list[int],
                 spatial: bool, device: torch.device) -> None:
        super().__init__()
        self.model = model  # a submodule when it is an nn.Module: its parameters are this net's
        self.declared, self.what, self.picked, self.spatial, self.device = declared, what, picked, spatial, device

    def outputs(self, images: torch.Tensor) -> torch.Tensor:
        """The model's checked outputs for (B, 1, H, W) images, the `picked` ones in order, on the model's device:
        (B, n) scores, or (B, n, H, W) class maps brought back to the images' size."""
        declared = self.declared
        size = declared.image_size or images.shape[-1]
        mean, std = declared.normalise
        x = ((resample(images.to(self.device).float(), size) - mean) / std).repeat(1, declared.channels, 1, 1)
        try:
            output = self.model(x)
        except UserModelError:
            raise
        except Exception as exc:  # whatever the user's code raises, the cell fails with its words
            raise UserModelError(f"{self.what}: raised {raised(exc)}") from exc
        shape = (len(x), len(declared.labels), *((size, size) if self.spatial else ()))
        output = checked_scores(output, shape, declared.outputs == "probabilities", self.what)[:, self.picked]
        return resample(output, images.shape[-1]) if self.spatial else output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of `outputs`: as returned, or the logit of each probability clamped to [eps, 1 − eps]."""
        output = self.outputs(images)
        return output if self.declared.outputs == "logits" else torch.logit(output, eps=PROBABILITY_EPS)


def checked_scores(output: Any, shape: tuple[int, ...], probabilities: bool, what: str) -> torch.Tensor:
    """A diagnostic model's output held to its contract: a tensor of `shape`, finite, in [0, 1] for probabilities;
    anything else is a UserModelError saying what was wrong."""
    output = checked_tensor(output, shape, what, "{got} outputs where its labels name {want}")
    if probabilities and (float(output.min()) < 0 or float(output.max()) > 1):
        raise UserModelError(f"{what}: declared outputs 'probabilities' but returned values in "
                             f"[{float(output.min()):.4g}, {float(output.max()):.4g}]; declare outputs: logits if "
                             "it returns logits")
    return output


class UserTaskModel(TaskModel):
    """What the user's classifier and segmenter share: loaded from their source, trained nothing, keyed by SHA-256."""

    role: str
    """Its config key under `diagnostic` (classifier_model, segmenter_model)."""

    def __init__(self, config: StudyConfig, device: torch.device, picked: list[int], spatial: bool) -> None:
        super().__init__(config, device)
        self.declared: UserDiagnosticConfig = getattr(config.diagnostic, self.role)
        self.what = described(self.role, self.declared)
        declared = self.declared
        model = load_model(declared.source, self.path(), declared.entry_point, device, self.what)
        self.net = UserNet(model, declared, self.what, picked, spatial, device)

    def path(self) -> Path | None:
        """The declared file or folder (the weights handed to an entry point), None when not given."""
        return Path(self.declared.path).expanduser() if self.declared.path else None

    def weights_key(self) -> str:
        """The hash of the user's file(s) as the run read them (set by `runner.prepare`)."""
        return stable_hash(self.name, self.declared.sha256)

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        """None: a user's model comes trained (`fit` never asks for a plan); asking is an error naming the model."""
        raise UserModelError(f"{self.what}: is trained outside Tandem; there is nothing to train")

    def fit(self, data: SplitData, checkpoint_dir: Path, progress: Progress = silent,
            frozen: Mapping[str, TrainableModel] | None = None) -> None:
        """Nothing to train or save: the model was loaded, trained, when built; it stays in eval mode."""
        self.net.eval()

    def load(self, checkpoint_dir: Path) -> None:
        """No checkpoint: the model was loaded when built (a replay checks first that its files are those the run
        hashed: `runner.replay`)."""
        self.net.eval()


class UserClassifier(UserTaskModel):
    """The user's classifier: per-finding probabilities in the cohort's order, from its outputs in its own order."""

    name = "classifier"
    role = "classifier_model"

    def __init__(self, config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> None:
        declared = config.diagnostic.classifier_model
        missing = [label for label in labels if label not in declared.labels]
        if missing:
            raise UserModelError(f"{described(self.role, declared)}: its labels {list(declared.labels)} lack the "
                                 f"cohort's finding(s) {missing}; name every output in the model's order, each "
                                 f"finding as the cohort does ({list(labels)})")
        self.labels = labels
        super().__init__(config, device, [declared.labels.index(label) for label in labels], spatial=False)

    def given_thresholds(self) -> dict[str, float]:
        """The thresholds its maker fixed (`thresholds`), for the cohort's findings."""
        return {label: t for label, t in self.declared.thresholds.items() if label in self.labels}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L) probabilities in the cohort's order for (B, 1, H, W) images, on the images' device."""
        output = self.net.outputs(images)
        return (output if self.declared.outputs == "probabilities" else torch.sigmoid(output)).to(images.device)

    def evidence(self, label: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The logit of finding `label` (the first finding when None); for a model returning probabilities, the
        logit of its probability clamped to [1e-6, 1 − 1e-6]."""
        j = self.labels.index(label) if label is not None else 0
        return lambda images: self.net(images)[:, j]

    def evaluate(self, images: torch.Tensor, truth: torch.Tensor | None) -> TaskOutput:
        """Per-finding probabilities (the scores table)."""
        return TaskOutput(scores=self.predict(images).cpu().numpy())


class UserSegmenter(UserTaskModel):
    """The user's segmenter: the `lesion` class where it wins the argmax over its classes (one class: above 0.5)."""

    name = "segmenter"
    role = "segmenter_model"

    def __init__(self, config: StudyConfig, device: torch.device) -> None:
        declared = config.diagnostic.segmenter_model
        super().__init__(config, device, list(range(len(declared.labels))), spatial=True)
        self.lesion = declared.labels.index(declared.lesion)

    def lesion_probability(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) probability of the lesion class: softmax over the classes of logits (sigmoid for one class), or
        the model's own probability."""
        output = self.net.outputs(images)
        if self.declared.outputs == "probabilities":
            return output[:, self.lesion]
        return torch.sigmoid(output[:, 0]) if output.shape[1] == 1 else torch.softmax(output, 1)[:, self.lesion]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) uint8 lesion masks on the images' device."""
        output = self.net.outputs(images)
        if output.shape[1] == 1:
            threshold = 0.5 if self.declared.outputs == "probabilities" else 0.0
            mask = output[:, :1] > threshold
        else:
            mask = output.argmax(1, keepdim=True) == self.lesion
        return mask.to(torch.uint8).to(images.device)

    def evidence(self, label: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The mean lesion probability of each slice (`label` is ignored: one structure is judged)."""
        return lambda images: self.lesion_probability(images).mean((-2, -1))

    def evaluate(self, images: torch.Tensor, truth: torch.Tensor | None) -> TaskOutput:
        """Predicted masks, and Dice and HD95 per slice against the true masks."""
        predicted = self.predict(images).cpu()
        metrics = {} if truth is None else {k: v.numpy() for k, v in segmentation_quality(predicted, truth).items()}
        return TaskOutput(metrics=metrics, masks=predicted[:, 0].numpy().astype(np.float32))


def study_classifier(config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> TaskModel:
    """The study's classifier of `labels`: the user's where `diagnostic.classifier_model` declares one, else the
    built-in (trained on the study's clean images)."""
    if config.diagnostic.classifier_model is not None:
        return UserClassifier(config, labels, device)
    return Classifier(config, labels, device)


def study_segmenter(config: StudyConfig, device: torch.device) -> TaskModel:
    """The study's tumour segmenter: the user's where `diagnostic.segmenter_model` declares one, else the built-in."""
    if config.diagnostic.segmenter_model is not None:
        return UserSegmenter(config, device)
    return Segmenter(config, device)
