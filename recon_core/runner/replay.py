"""Rebuilds one test image on both roads, exactly as the sweep did, from the config and checkpoints.

Per-image seeds make this possible without the rest of the cohort: the synthetic subject is
re-rendered (or the real image re-read), degraded with its own (seed, image id, level) noise and
reconstructed with the stored weights. Nothing is trained here: missing weights are an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recon_core.cohorts.demographics import CohortError
from recon_core.config import StudyConfig
from recon_core.diagnostics import Classifier
from recon_core.physics import build_physics
from recon_core.reconstructors import Reconstructor, build_reconstructor


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
    """Loads a study's cohort description and trained models once; replays single cases on demand."""

    def __init__(self, config: StudyConfig, checkpoint_dir: Path, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.physics = build_physics(config)
        self.segmenter = None
        if config.modality == "mri":
            from recon_core.cohorts.brain_anatomy import brain_stack
            from recon_core.cohorts.synthetic_mri import LABELS as MRI_LABELS
            from recon_core.cohorts.synthetic_mri import sample_patients
            from recon_core.diagnostics.segmenter import Segmenter

            self.labels = MRI_LABELS
            if config.cohort.source == "nifti":
                from recon_core.cohorts.nifti_mri import read_metadata

                self.subjects = read_metadata(config.cohort, config.seed).set_index("subject_id", drop=False)
            else:
                self.subjects = sample_patients(config.cohort, config.seed).set_index("subject_id", drop=False)
                self.template = brain_stack(config.cohort.anatomy, config.cohort.image_size)
            self.segmenter = Segmenter(config, device)
            self.segmenter.load(checkpoint_dir)
        elif config.cohort.source == "synthetic":
            from recon_core.cohorts.chest_anatomy import template_for
            from recon_core.cohorts.synthetic_xray import LABELS, sample_subjects

            self.labels = LABELS
            self.subjects = sample_subjects(config.cohort, config.seed).set_index("image_id", drop=False)
            self.template = template_for(config.cohort.anatomy, config.cohort.image_size)
        else:
            self.labels = tuple(config.cohort.csv.labels)
            self.subjects = None
        self.classifier = Classifier(config, self.labels, device)
        self.classifier.load(checkpoint_dir)
        self._reconstructors: dict[str, Reconstructor] = {}

    def reconstructor(self, name: str) -> Reconstructor:
        """A registered reconstructor with its trained weights (loaded once)."""
        if name not in self._reconstructors:
            recon = build_reconstructor(name, self.config, self.device)
            recon.load(self.checkpoint_dir)
            self._reconstructors[name] = recon
        return self._reconstructors[name]

    def _mri_slice(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        from recon_core.cohorts.synthetic_mri import render_patient

        subject, _, k = image_id.rpartition("-s")
        cohort = self.config.cohort
        count = cohort.slices_per_subject if cohort.source == "synthetic" else (
            cohort.nifti.slice_range[1] - cohort.nifti.slice_range[0])
        if subject not in self.subjects.index or not k.isdigit() or int(k) >= count:
            raise CohortError(f"slice {image_id!r} is not in this study's cohort")
        if cohort.source == "nifti":
            from recon_core.cohorts.nifti_mri import read_patient

            images, masks = read_patient(cohort, subject)
        else:
            images, masks = render_patient(self.template, self.subjects.loc[subject], count, self.config.seed)
        return images[int(k)], masks[int(k)]

    def clean_image(self, image_id: str) -> np.ndarray:
        """The clean image as the cohort produced it."""
        if self.config.modality == "mri":
            return self._mri_slice(image_id)[0]
        if self.subjects is not None:
            from recon_core.cohorts.synthetic_xray import render_subject

            if image_id not in self.subjects.index:
                raise CohortError(f"image {image_id!r} is not in this study's cohort")
            return render_subject(self.template, self.subjects.loc[image_id], self.config.seed)
        from recon_core.cohorts.csv_xray import read_image

        return read_image(Path(self.config.cohort.csv.image_root) / image_id, self.config.cohort.image_size)

    @torch.no_grad()
    def case(self, image_id: str, reconstructor: str, level: float) -> Case:
        """Clean → degrade → reconstruct → classify for one image, on the sweep's seeds."""
        truth = None
        if self.config.modality == "mri":
            image, truth = self._mri_slice(image_id)
        else:
            image = self.clean_image(image_id)
        clean = torch.from_numpy(image[None, None]).to(self.device)
        measurement = self.physics.measure(clean, level, [image_id])
        degraded = self.physics.to_image(measurement, level)
        output = self.reconstructor(reconstructor).reconstruct(degraded, self.physics, level, measurement, [image_id])
        both = torch.cat([clean, output])
        scores = self.classifier.predict(both).cpu().numpy()
        masks = [None, None]
        if self.segmenter is not None:
            masks = list(self.segmenter.predict(both)[:, 0].cpu().numpy())
        return Case(image_id, self.labels, clean[0, 0].cpu().numpy(), degraded[0, 0].cpu().numpy(),
                    output[0, 0].cpu().numpy(), scores[0], scores[1], truth, *masks)


def scores_table(case: Case) -> pd.DataFrame:
    """Per-finding scores on both roads (for display)."""
    return pd.DataFrame({"finding": case.labels, "clean": case.clean_scores, "reconstructed": case.recon_scores})
