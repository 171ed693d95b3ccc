"""Evaluates one sweep cell: degrade → reconstruct → diagnostic models → per-image metrics, in batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recon_core.device import network_precision
from recon_core.diagnostics.task import TaskModel, scorer
from recon_core.metrics.image_quality import QUALITY_METRICS, image_quality
from recon_core.metrics.lesions import lesion_metrics
from recon_core.models.batches import SplitData
from recon_core.models.user_models import UserModelError
from recon_core.physics.base import Acquisition
from recon_core.progress import Progress, silent
from recon_core.reconstructors.base import Reconstructor
from recon_core.reconstructors.user import named_ids
from recon_core.runner.inputs import KeptInputs, input_batches
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


@dataclass
class Outputs:
    """One batch's reconstructions: the reported image, and for samplers the per-pixel std and the samples."""

    image: torch.Tensor
    std: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    """(n, B, 1, H, W) posterior samples (n > 1), else None."""


def _outputs(samples: torch.Tensor) -> Outputs:
    """The mean of n samples as the reconstruction; with n > 1 also their spread and the samples."""
    if len(samples) == 1:
        return Outputs(samples[0])
    return Outputs(samples.mean(0), samples.std(0), samples)


def _reconstruct(reconstructor: Reconstructor, degraded: torch.Tensor, physics: Acquisition, level: float,
                 measurement: torch.Tensor, ids: list[str], cache: ReconstructionCache | None) -> Outputs:
    """One batch's reconstructions, taking cached images and computing only the rest."""
    if cache is None:
        return _outputs(reconstructor.reconstruct_samples(degraded, physics, level, measurement, ids))
    hits = [cache.get(i) for i in ids]
    todo = [j for j, hit in enumerate(hits) if hit is None or (hit[1] is not None and hit[2] is None)]
    if todo:
        new = _outputs(reconstructor.reconstruct_samples(degraded[todo], physics, level, measurement[todo],
                                                         [ids[j] for j in todo]))
        for k, j in enumerate(todo):  # float32 on disk, whatever arithmetic made them
            cache.put(ids[j], new.image[k].float().cpu().numpy(),
                      None if new.std is None else new.std[k].float().cpu().numpy(),
                      None if new.samples is None else new.samples[:, k].float().cpu().numpy())
            hits[j] = cache.get(ids[j])

    def stacked(part: int, axis: int = 0) -> torch.Tensor | None:
        arrays = [h[part] for h in hits]
        if any(a is None for a in arrays):
            return None
        return torch.from_numpy(np.stack(arrays, axis).astype(np.float32)).to(degraded.device)

    return Outputs(stacked(0), stacked(1), stacked(2, axis=1))


def evaluate_cell(data: SplitData, task_models: Sequence[TaskModel], physics: Acquisition,
                  reconstructor: Reconstructor | None, level: float, device: torch.device, batch_size: int,
                  example_ids: Sequence[str], progress: Progress = silent, stage: str = "",
                  cache_root: Path | None = None, kept: KeptInputs | None = None,
                  precision: str = "float32") -> CellResult:
    """Runs every image of `data` through one (reconstructor, level) cell; `reconstructor=None` is the clean road.

    Inputs are degraded ahead of the models by worker threads (`runner.inputs`), with each image's
    own noise, so a cell's numbers do not depend on the batch size or the device; with `kept`, a
    level's inputs are drawn once for every reconstructor of a sweep. `precision` 'bf16' runs the
    networks under bfloat16 autocast; physics and image metrics stay float32.

    Each task model answers on the output: the classifier's scores become the scores table, a
    segmenter's per-image Dice/HD95 join the metrics and its masks the examples (with the true
    masks for outlines). Reconstructors that ask for it (`cache_outputs`, diffusion) are served
    from and fill a disk cache under `cache_root`.
    """
    cache = None
    if reconstructor is not None and reconstructor.cache_outputs and cache_root is not None:
        cache = ReconstructionCache(cache_root, reconstructor.name, reconstructor.cache_key(), level)
    scoring = list(task_models).index(scorer(task_models))
    start = time.perf_counter()
    ids = data.rows["image_id"].tolist()
    wanted = set(example_ids)
    metric_parts: list[dict[str, np.ndarray]] = []
    score_parts: list[np.ndarray] = []
    examples: dict[tuple[str, str], np.ndarray] = {}
    for batch in input_batches(data, physics, None if reconstructor is None else level, batch_size, device,
                               kept=kept):
        lo, batch_ids, clean, truth, degraded = batch.start, batch.ids, batch.clean, batch.truth, batch.degraded
        std = None
        if reconstructor is None:
            output = clean
            quality = {k: np.full(len(batch_ids), np.nan) for k in QUALITY_METRICS}
        else:
            with network_precision(device, precision):
                made = _reconstruct(reconstructor, degraded, physics, level, batch.measurement, batch_ids, cache)
            output, std = made.image.float(), None if made.std is None else made.std.float()
            quality = {k: v.cpu().numpy() for k, v in image_quality(output, clean).items()}
        with network_precision(device, precision):
            try:
                answers = [model.evaluate(output, truth) for model in task_models]
            except UserModelError as exc:  # a user's diagnostic model broke its contract: say on which images
                raise UserModelError(f"{exc} (on {named_ids(batch_ids)})") from exc
        for answer in answers:
            quality |= answer.metrics
        score_parts.append(answers[scoring].scores)
        predicted = next((a.masks for a in answers if a.masks is not None), None)
        # the hallucination check's measurements at each image's known lesion site (synthetic cohorts only)
        quality |= lesion_metrics(output, data.rows.iloc[lo:lo + len(batch_ids)], predicted)
        metric_parts.append(quality)
        for j, image_id in enumerate(batch_ids):
            if image_id not in wanted:
                continue
            if reconstructor is None:
                examples[image_id, "clean"] = clean[j, 0].cpu().numpy()
                if truth is not None:
                    examples[image_id, "mask_true"] = truth[j, 0].numpy().astype(np.float32)
            else:
                examples[image_id, "degraded"] = degraded[j, 0].cpu().numpy()
                examples[image_id, "reconstructed"] = output[j, 0].cpu().numpy()
                if std is not None:
                    examples[image_id, "uncertainty"] = std[j, 0].cpu().numpy()
            if predicted is not None:
                examples[image_id, "mask_pred"] = predicted[j]
        progress(stage, min(lo + batch_size, len(ids)), len(ids))
    if cache is not None:
        cache.save()
    metrics = data.rows[["image_id", "subject_id", "sex", "age", "age_band"]].copy()
    for name in metric_parts[0]:
        metrics[name] = np.concatenate([part[name] for part in metric_parts]).astype(float)
    labels = data.labels
    scores = np.concatenate(score_parts)
    targets = data.rows[list(labels)].to_numpy(dtype=float)
    long = pd.DataFrame({
        "image_id": np.repeat(ids, len(labels)),
        "label": np.tile(labels, len(ids)),
        "score": scores.reshape(-1).astype(float),
        "target": targets.reshape(-1),
    })
    return CellResult(metrics, long, examples, time.perf_counter() - start)
