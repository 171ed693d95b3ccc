"""Rebuilds one test image on both roads, exactly as the sweep did, from the config and checkpoints.

Per-image seeds make this possible without the rest of the cohort: the cohort source gives the
one image (a synthetic subject re-rendered, a real image re-read), which is degraded with its
own (seed, image id, level) noise and reconstructed with the stored weights. Nothing is trained
here: missing weights are an error, and so is a user's model file changed since the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recon_core.cohorts import CohortError
from recon_core.config import StudyConfig
from recon_core.diagnostics import scorer
from recon_core.modalities import get_modality
from recon_core.models.contract import TrainableModel
from recon_core.models.user_models import UserModelError
from recon_core.reconstructors import Reconstructor, build_reconstructor
from recon_core.runner.model_cards import with_model_hashes


@dataclass
class Case:
    """One image's clean, degraded and reconstructed pixels and the classifier's scores on each road."""

    image_id: str
    labels: tuple[str, ...]
    clean: np.ndarray
    degraded: np.ndarray
    reconstructed: np.ndarray
    clean_scores: np.ndarray
    recon_scores: np.ndarray
    # MRI: true tumour mask and the segmenter's masks on the clean and reconstructed slice
    mask_true: np.ndarray | None = None
    mask_clean: np.ndarray | None = None
    mask_recon: np.ndarray | None = None


class CaseReplayer:
    """Loads a study's cohort source and trained models once; replays single cases on demand."""

    def __init__(self, config: StudyConfig, checkpoint_dir: Path, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        modality = get_modality(config.modality)
        self.physics = modality.build_physics(config)
        self.source = modality.cohort_source(config)
        if config.cohort.fingerprint and self.source.fingerprint() != config.cohort.fingerprint:
            raise CohortError(f"the dataset of run {config.name} ({config.config_hash()}) has changed since it ran "
                              "(its files' fingerprint differs): a replay would not show what the run measured; "
                              "run the study again")
        if with_model_hashes(config) != config:
            raise UserModelError(f"a model file of run {config.name} ({config.config_hash()}) has changed since it "
                                 "ran (its SHA-256 differs): a replay would not show what the run measured; run the "
                                 "study again")
        self.labels = self.source.labels
        self.task_models = modality.task_models(config, self.labels, device)
        for model in self.task_models:
            model.load(checkpoint_dir)
        self.classifier = scorer(self.task_models)
        self._reconstructors: dict[str, Reconstructor] = {}

    def reconstructor(self, name: str) -> Reconstructor:
        """A registered reconstructor with its trained weights (loaded once)."""
        if name not in self._reconstructors:
            recon = build_reconstructor(name, self.config, self.device)
            if isinstance(recon, TrainableModel):
                recon.load(self.checkpoint_dir)
            self._reconstructors[name] = recon
        return self._reconstructors[name]

    def clean_image(self, image_id: str) -> np.ndarray:
        """The clean image as the cohort produced it."""
        return self.source.item(image_id)[0]

    @torch.no_grad()
    def case(self, image_id: str, reconstructor: str, level: float) -> Case:
        """Clean → degrade → reconstruct → diagnostic models for one image, on the sweep's seeds."""
        image, truth = self.source.item(image_id)
        clean = torch.from_numpy(image[None, None]).to(self.device)
        measurement = self.physics.measure(clean, level, [image_id])
        degraded = self.physics.to_image(measurement, level)
        output = self.reconstructor(reconstructor).reconstruct(degraded, self.physics, level, measurement, [image_id])
        both = torch.cat([clean, output])
        truth_t = None if truth is None else torch.from_numpy(np.stack([truth, truth])[:, None])
        answers = {model.name: model.evaluate(both, truth_t) for model in self.task_models}
        scores = answers[self.classifier.name].scores
        masks = next((list(a.masks) for a in answers.values() if a.masks is not None), [None, None])
        mask_true = None if truth is None else truth.astype(np.float32)
        return Case(image_id, self.labels, clean[0, 0].cpu().numpy(), degraded[0, 0].cpu().numpy(),
                    output[0, 0].cpu().numpy(), scores[0], scores[1], mask_true, *masks)


    @torch.no_grad()
    def posterior(self, image_id: str, reconstructor: str, level: float) -> np.ndarray:
        """(n, H, W) posterior samples of one image, drawn on the sweep's seeds (n = 1 for a deterministic method)."""
        image, _ = self.source.item(image_id)
        clean = torch.from_numpy(image[None, None]).to(self.device)
        measurement = self.physics.measure(clean, level, [image_id])
        degraded = self.physics.to_image(measurement, level)
        samples = self.reconstructor(reconstructor).reconstruct_samples(degraded, self.physics, level, measurement,
                                                                         [image_id])
        return samples[:, 0, 0].float().cpu().numpy()


def scores_table(case: Case) -> pd.DataFrame:
    """Per-finding scores on both roads (for display)."""
    return pd.DataFrame({"finding": case.labels, "clean": case.clean_scores, "reconstructed": case.recon_scores})
