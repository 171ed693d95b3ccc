"""Evaluates one sweep cell: degrade → reconstruct → diagnostic models → per-image metrics, in batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recon_core.device import network_precision
from recon_core.diagnostics.task import TaskModel, TaskOutput, scorer
from recon_core.metrics.image_quality import QUALITY_METRICS, image_quality
from recon_core.metrics.lesions import lesion_metrics
from recon_core.metrics.uncertainty import BIN_EDGES, calibration_bins, spread_calibration
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
    """Per-image rows of one cell plus the pixels of its example images and its timing.

    A sampler's cell also holds each posterior sample's diagnostic answers (`samples`: image_id,
    draw, name — a finding's label or 'dice' —, value) and each image's calibration-curve sums
    (`calibration`: image_id, bin, pixels, sum_std, sum_sq_error); both empty otherwise.
    """

    metrics: pd.DataFrame
    scores: pd.DataFrame
    examples: dict[tuple[str, str], np.ndarray]
    seconds: float
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(SAMPLE_COLUMNS)))
    calibration: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CALIBRATION_COLUMNS)))


SAMPLE_COLUMNS = ("image_id", "draw", "name", "value")
CALIBRATION_COLUMNS = ("image_id", "bin", "pixels", "sum_std", "sum_sq_error")


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
    """The mean of n samples as the reconstruction; with n > 1 also their spread and the samples.

    The samples handed on are rounded to float16, as the disk cache keeps them, so a sample's
    diagnostic calls are the same whether it was drawn now, read from the cache or not cached.
    """
    if len(samples) == 1:
        return Outputs(samples[0])
    return Outputs(samples.mean(0), samples.std(0), samples.half().to(samples.dtype))


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


def _posterior(made: Outputs, clean: torch.Tensor, truth: torch.Tensor | None, task_models: Sequence[TaskModel],
               scoring: int, answers: Sequence[TaskOutput], thresholds: dict[str, float], dice_change: float,
               ids: Sequence[str]) -> tuple[dict[str, np.ndarray], pd.DataFrame, pd.DataFrame]:
    """A sampler's batch: per-image calibration of its spread and sample flips, each sample's diagnostic answers
    and the calibration-curve sums.

    Every posterior sample goes to every task model. A sample flips the classification when its
    call of some finding (at the operating threshold) differs from the posterior's own call, the
    majority of the draws (the reported reconstruction's call breaks a tie): the share measures
    disagreement within the posterior, not how the smoother mean differs from every draw. A sample
    flips the segmentation when its Dice differs from the reported reconstruction's by more than
    `dice_change`.
    """
    samples = made.samples
    n, batch = samples.shape[0], samples.shape[1]
    metrics = spread_calibration(made.image, made.std, clean, n)
    per_sample = [[model.evaluate(sample, truth) for model in task_models] for sample in samples]
    labels = task_models[scoring].labels
    cut = np.array([thresholds[label] for label in labels])
    scores = np.stack([draw[scoring].scores for draw in per_sample])  # (n, B, L)
    calls = scores >= cut
    positive = calls.sum(0)  # draws calling each finding, (B, L)
    # the posterior's own call of each finding: its draws' majority, the reported reconstruction's on a tie
    reference = np.where(2 * positive == n, answers[scoring].scores >= cut, 2 * positive > n)
    metrics["sample_flip"] = (calls != reference).any(axis=2).mean(0)
    parts = [pd.DataFrame({"image_id": np.repeat(ids, len(labels)), "draw": k, "name": np.tile(labels, batch),
                           "value": scores[k].reshape(-1).astype(float)}) for k in range(n)]
    if any("dice" in a.metrics for a in answers):
        reported = next(a.metrics["dice"] for a in answers if "dice" in a.metrics)
        per_draw = np.stack([next(a.metrics["dice"] for a in draw if "dice" in a.metrics) for draw in per_sample])
        metrics["sample_dice_flip"] = (np.abs(per_draw - reported) > dice_change).mean(0)
        parts += [pd.DataFrame({"image_id": list(ids), "draw": k, "name": "dice", "value": per_draw[k].astype(float)})
                  for k in range(n)]
    rows = pd.concat(parts, ignore_index=True)
    sums = calibration_bins(made.image, made.std, clean)  # (B, bins, 3)
    bins = len(BIN_EDGES) - 1
    calibration = pd.DataFrame({"image_id": np.repeat(ids, bins), "bin": np.tile(np.arange(bins), batch),
                                "pixels": sums[:, :, 0].reshape(-1), "sum_std": sums[:, :, 1].reshape(-1),
                                "sum_sq_error": sums[:, :, 2].reshape(-1)})
    return metrics, rows, calibration


def evaluate_cell(data: SplitData, task_models: Sequence[TaskModel], physics: Acquisition,
                  reconstructor: Reconstructor | None, level: float, device: torch.device, batch_size: int,
                  example_ids: Sequence[str], progress: Progress = silent, stage: str = "",
                  cache_root: Path | None = None, kept: KeptInputs | None = None,
                  precision: str = "float32", thresholds: dict[str, float] | None = None,
                  dice_change: float = 0.1) -> CellResult:
    """Runs every image of `data` through one (reconstructor, level) cell; `reconstructor=None` is the clean road.

    Inputs are degraded ahead of the models by worker threads (`runner.inputs`), with each image's
    own noise, so a cell's numbers do not depend on the batch size or the device; with `kept`, a
    level's inputs are drawn once for every reconstructor of a sweep. `precision` 'bf16' runs the
    networks under bfloat16 autocast; physics and image metrics stay float32.

    Each task model answers on the output: the classifier's scores become the scores table, a
    segmenter's per-image Dice/HD95 join the metrics and its masks the examples (with the true
    masks for outlines). Reconstructors that ask for it (`cache_outputs`, diffusion) are served
    from and fill a disk cache under `cache_root`. A sampler's posterior samples are judged too
    (`_posterior`: calibration of the spread, each sample's calls against `thresholds`, the
    classifier's operating thresholds, needed then).
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
    sample_parts: list[pd.DataFrame] = []
    calibration_parts: list[pd.DataFrame] = []
    examples: dict[tuple[str, str], np.ndarray] = {}
    for batch in input_batches(data, physics, None if reconstructor is None else level, batch_size, device,
                               kept=kept):
        lo, batch_ids, clean, truth, degraded = batch.start, batch.ids, batch.clean, batch.truth, batch.degraded
        made = Outputs(clean)
        if reconstructor is None:
            quality = {k: np.full(len(batch_ids), np.nan) for k in QUALITY_METRICS}
        else:
            with network_precision(device, precision):
                made = _reconstruct(reconstructor, degraded, physics, level, batch.measurement, batch_ids, cache)
            made = Outputs(made.image.float(), None if made.std is None else made.std.float(),
                           None if made.samples is None else made.samples.float())
            quality = {k: v.cpu().numpy() for k, v in image_quality(made.image, clean).items()}
        output = made.image
        with network_precision(device, precision):
            try:
                answers = [model.evaluate(output, truth) for model in task_models]
                if made.samples is not None:
                    if thresholds is None:
                        raise ValueError(f"{stage}: posterior samples are judged at the operating thresholds; "
                                         "none were given")
                    extra, drawn, sums = _posterior(made, clean, truth, task_models, scoring, answers, thresholds,
                                                    dice_change, batch_ids)
                    quality |= extra
                    sample_parts.append(drawn)
                    calibration_parts.append(sums)
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
                if made.std is not None:
                    examples[image_id, "uncertainty"] = made.std[j, 0].cpu().numpy()
                if made.samples is not None:  # two single draws, to show what one sample looks like
                    for k in range(min(2, len(made.samples))):
                        examples[image_id, f"sample{k}"] = made.samples[k, j, 0].cpu().numpy()
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
    result = CellResult(metrics, long, examples, time.perf_counter() - start)
    if sample_parts:
        result.samples = pd.concat(sample_parts, ignore_index=True)
        result.calibration = pd.concat(calibration_parts, ignore_index=True)
    return result
