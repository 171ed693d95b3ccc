"""Evaluates one sweep cell: degrade → reconstruct → classify → per-image metrics, in batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recon_core.diagnostics.classifier import Classifier
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.metrics.image_quality import QUALITY_METRICS, image_quality
from recon_core.metrics.segmentation import segmentation_quality
from recon_core.physics.base import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors.base import Reconstructor
from recon_core.runner.recon_cache import ReconstructionCache


@dataclass
class CellResult:
    """Per-image rows of one cell plus the pixels of its example images and its timing."""

    metrics: pd.DataFrame
    scores: pd.DataFrame
    examples: dict[tuple[str, str], np.ndarray]
    seconds: float


def pick_examples(rows: pd.DataFrame, labels: tuple[str, ...], count: int) -> list[str]:
    """A fixed, varied set of test images: a positive of each finding in turn, then negatives."""
    chosen: list[str] = []
    if "tumour_pixels" in rows:  # MRI: each patient's slice with the most tumour, one slice per patient
        rows = rows.sort_values(["tumour_pixels", "image_id"], ascending=[False, True]).drop_duplicates("subject_id")
    ordered = rows.sort_values("image_id")
    pools = [ordered.image_id[ordered[lb] == 1].tolist() for lb in labels]
    pools.append(ordered.image_id[(ordered[list(labels)].fillna(0) == 0).all(axis=1)].tolist())
    while len(chosen) < min(count, len(rows)) and any(pools):
        for pool in pools:
            while pool and pool[0] in chosen:
                pool.pop(0)
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    return chosen


def _reconstruct(reconstructor: Reconstructor, degraded: torch.Tensor, physics: Acquisition, level: float,
                 measurement: torch.Tensor, ids: list[str],
                 cache: ReconstructionCache | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batch's reconstructions (and posterior std), taking cached images and computing only the rest."""
    if cache is None:
        return reconstructor.reconstruct_samples(degraded, physics, level, measurement, ids)
    hits = [cache.get(i) for i in ids]
    todo = [j for j, hit in enumerate(hits) if hit is None]
    if todo:
        new, new_std = reconstructor.reconstruct_samples(degraded[todo], physics, level, measurement[todo],
                                                         [ids[j] for j in todo])
        for k, j in enumerate(todo):
            cache.put(ids[j], new[k].cpu().numpy(), None if new_std is None else new_std[k].cpu().numpy())
            hits[j] = cache.get(ids[j])
    output = torch.from_numpy(np.stack([h[0] for h in hits])).to(degraded.device)
    stds = [h[1] for h in hits]
    std = torch.from_numpy(np.stack(stds)).to(degraded.device) if all(s is not None for s in stds) else None
    return output, std


def evaluate_cell(rows: pd.DataFrame, images: np.ndarray, labels: tuple[str, ...], classifier: Classifier,
                  physics: Acquisition, reconstructor: Reconstructor | None, level: float,
                  device: torch.device, batch_size: int, example_ids: list[str],
                  modality: str, progress: Progress = silent, stage: str = "",
                  segmenter: Segmenter | None = None, masks: np.ndarray | None = None,
                  cache_root: Path | None = None) -> CellResult:
    """Runs every test image through one (reconstructor, level) cell; `reconstructor=None` is the clean road.

    With a segmenter and the true masks (MRI), each slice also gets Dice and HD95, and the
    example images keep the true and predicted masks for outlines. Reconstructors that ask for it
    (`cache_outputs`, diffusion) are served from and fill a disk cache under `cache_root`.
    """
    cache = None
    if reconstructor is not None and reconstructor.cache_outputs and cache_root is not None:
        cache = ReconstructionCache(cache_root, reconstructor.name, reconstructor.cache_key(), level)
    start = time.perf_counter()
    ids = rows["image_id"].tolist()
    wanted = set(example_ids)
    metric_parts: list[dict[str, np.ndarray]] = []
    score_parts: list[np.ndarray] = []
    examples: dict[tuple[str, str], np.ndarray] = {}
    for lo in range(0, len(ids), batch_size):
        batch_ids = ids[lo:lo + batch_size]
        clean = torch.from_numpy(images[lo:lo + batch_size][:, None]).to(device)
        if reconstructor is None:
            output = clean
            quality = {k: np.full(len(batch_ids), np.nan) for k in QUALITY_METRICS}
        else:
            measurement = physics.measure(clean, level, batch_ids)
            degraded = physics.to_image(measurement, level)
            output, std = _reconstruct(reconstructor, degraded, physics, level, measurement, batch_ids, cache)
            quality = {k: v.cpu().numpy() for k, v in image_quality(output, clean).items()}
        predicted = None
        if segmenter is not None and masks is not None:
            truth = torch.from_numpy(masks[lo:lo + batch_size][:, None])
            predicted = segmenter.predict(output).cpu()
            quality |= {k: v.numpy() for k, v in segmentation_quality(predicted, truth).items()}
        metric_parts.append(quality)
        score_parts.append(classifier.predict(output).cpu().numpy())
        for j, image_id in enumerate(batch_ids):
            if image_id in wanted:
                if reconstructor is None:
                    examples[image_id, "clean"] = clean[j, 0].cpu().numpy()
                    if predicted is not None:
                        examples[image_id, "mask_true"] = masks[lo + j].astype(np.float32)
                else:
                    examples[image_id, "degraded"] = degraded[j, 0].cpu().numpy()
                    examples[image_id, "reconstructed"] = output[j, 0].cpu().numpy()
                    if std is not None:
                        examples[image_id, "uncertainty"] = std[j, 0].cpu().numpy()
                if predicted is not None:
                    examples[image_id, "mask_pred"] = predicted[j, 0].numpy().astype(np.float32)
        progress(stage, min(lo + batch_size, len(ids)), len(ids))
    if cache is not None:
        cache.save()
    metrics = rows[["image_id", "subject_id", "sex", "age", "age_band"]].copy()
    metrics.insert(0, "modality", modality)
    for name in metric_parts[0]:
        metrics[name] = np.concatenate([part[name] for part in metric_parts]).astype(float)
    scores = np.concatenate(score_parts)
    targets = rows[list(labels)].to_numpy(dtype=float)
    long = pd.DataFrame({
        "image_id": np.repeat(ids, len(labels)),
        "label": np.tile(labels, len(ids)),
        "score": scores.reshape(-1).astype(float),
        "target": targets.reshape(-1),
    })
    return CellResult(metrics, long, examples, time.perf_counter() - start)
