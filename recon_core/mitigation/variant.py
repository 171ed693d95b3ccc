"""`<base>+<strategy>`: a trained reconstructor fine-tuned against bias, swept and stored like any other.

The variant starts from its base's trained weights (fitting the base first if needed) and
trains `reconstructors.mitigation.steps` more on the reconstructor-training split with the
base's own pixel loss plus its strategy's term (`config.MitigationConfig` says each). At
inference it reconstructs exactly as its base does, with its own weights, so the comparison
with the base on the same test images isolates what the fine-tuning changed; the 'finetune'
strategy (no term) separates a strategy's effect from that of extra training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from recon_core.config import StudyConfig, stable_hash
from recon_core.mitigation.adversarial import Adversary, AdversaryLoss, DefeatAdversary, diagnostic_view
from recon_core.mitigation.attributes import MitigationError, SensitiveAttribute
from recon_core.mitigation.equalized_odds import SoftDiceGap, SoftEqualizedOddsGap
from recon_core.mitigation.reweighting import balanced_weights
from recon_core.modalities import get_modality
from recon_core.models.batches import SplitData
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import Loss
from recon_core.physics.base import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors.base import NetworkReconstructor, Reconstructor
from recon_core.seeding import seeded_torch

NEEDS_MODEL = ("eodd", "adversarial")
"""Strategies whose term goes through the frozen diagnostic model."""
_TRAINING = ("steps", "batch_size", "learning_rate")
READS = {"finetune": _TRAINING, "reweight": (*_TRAINING, "attribute"),
         "eodd": (*_TRAINING, "attribute", "eodd_weight", "temperature"),
         "adversarial": (*_TRAINING, "attribute", "adversarial_weight", "adversary_hidden", "adversary_learning_rate")}
"""The `reconstructors.mitigation` settings each strategy reads: its weights key holds these alone."""


class MitigatedReconstructor(NetworkReconstructor):
    """A base reconstructor's network fine-tuned by one strategy; reconstructs as the base does."""

    def __init__(self, config: StudyConfig, device: torch.device, name: str, base: Reconstructor,
                 strategy: str) -> None:
        super().__init__(config, device)
        tuning = base.fine_tuning()
        if tuning is None:
            raise MitigationError(f"reconstructor {name!r}: its base {base.name!r} has no network to fine-tune")
        self.name, self.base, self.strategy, self.tuning = name, base, strategy, tuning
        self.net = tuning.net
        self.arch = {"base": tuning.arch, "mitigation": strategy}
        self.uses = (get_modality(config.modality).fairness_model,) if strategy in NEEDS_MODEL else ()
        self.thresholds: dict[str, float] = {}
        """The classifier's operating thresholds (set by the runner before fitting): where the soft decisions cut."""

    def weights_key(self) -> str:
        """The base's weights (or a user model's declaration), the strategy and the settings it reads, the training
        data (cohort, physics, seed) and, for strategies through a frozen model, the diagnostic settings."""
        c = self.config
        base = self.base.weights_key() if isinstance(self.base, TrainableModel) else self.base.cache_key()
        settings = {name: getattr(c.reconstructors.mitigation, name) for name in READS[self.strategy]}
        frozen = [c.diagnostic] if self.uses else []
        return stable_hash("mitigation", self.strategy, base, settings, c.cohort, c.physics, c.seed, *frozen)

    def fit(self, data: SplitData, checkpoint_dir: Path, progress: Progress = silent,
            frozen: Mapping[str, TrainableModel] | None = None) -> None:
        """Loads the variant's weights, or fits (loads) its base and fine-tunes the base's network from there."""
        if not self.checkpoint_path(checkpoint_dir).exists() and isinstance(self.base, TrainableModel):
            self.base.fit(data, checkpoint_dir, progress, frozen)
        super().fit(data, checkpoint_dir, progress, frozen)

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        """The base's pixel loss plus the strategy's term, on batches drawn as the strategy says."""
        cfg, seed = self.config.reconstructors.mitigation, self.config.seed
        attribute = None
        if self.strategy != "finetune":
            attribute = SensitiveAttribute.of(data.rows, cfg.attribute, "the reconstructor-training split")
        weights = balanced_weights(data.rows, attribute) if self.strategy == "reweight" else None
        batches = data.degraded_sampler(self.config.physics.levels, seed, f"{self.name}-train", cfg.batch_size,
                                        self.device, weights)
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.steps)
        loss: Loss = self.tuning.loss
        objectives, modules = [], [self.net]
        if self.strategy == "eodd":
            loss = loss + cfg.eodd_weight * self.gap_penalty(frozen[self.uses[0]], attribute)
        elif self.strategy == "adversarial":
            model = frozen[self.uses[0]]
            view, width = diagnostic_view(model)
            with seeded_torch(seed, f"{self.name}-adversary"):
                adversary = Adversary(width, cfg.adversary_hidden, len(attribute.groups)).to(self.device)
            a_optimiser, a_schedule = adam(adversary, cfg.adversary_learning_rate, cfg.steps)

            def seen(batch) -> torch.Tensor:
                with torch.no_grad():
                    return view(self.tuning.output(batch))

            objectives.append(Objective(seen, AdversaryLoss(adversary, attribute), a_optimiser, a_schedule))
            chance = attribute.prior_entropy(data.rows)
            loss = loss + cfg.adversarial_weight * DefeatAdversary(adversary, view, attribute, chance)
            modules.append(adversary)
        objectives.append(Objective(self.tuning.output, loss, optimiser, schedule))
        return TrainingPlan(cfg.steps, batches, objectives, modules, self.device)

    def gap_penalty(self, model: TrainableModel, attribute: SensitiveAttribute) -> Loss:
        """The EODD term through the frozen model: a classifier's soft TPR + FPR gaps at its operating thresholds,
        or a segmenter's soft Dice gap."""
        labels = getattr(model, "labels", ())
        if labels:
            missing = [label for label in labels if label not in self.thresholds]
            if missing:
                raise MitigationError(f"reconstructor {self.name!r}: no operating threshold for {missing}; the "
                                      "runner sets the classifier's thresholds before fitting a variant")
            return SoftEqualizedOddsGap(model.net, [self.thresholds[label] for label in labels], attribute,
                                        self.config.reconstructors.mitigation.temperature)
        return SoftDiceGap(model.lesion_probability, attribute)

    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        return self.base.reconstruct(degraded, physics, level, measurement, image_ids)
