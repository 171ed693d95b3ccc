"""A cell's input batches, prepared ahead of the models: clean images, true masks, and what the scanner recorded.

Evaluation noise stays per (seed, image id, level), drawn on the CPU by each image's own generator
(`Acquisition.measure`): the numbers are the same on every device and for every batch size. So
that these draws never hold the device up, worker threads prepare the next batches while the
models run on a GPU (torch's CPU kernels release the GIL, so the draws of several batches run
beside the device's work); batches come back in order. On a CPU device they are drawn inline.
A study draws each level's inputs once: `KeptInputs` holds them for the other reconstructors'
cells at that level, within a memory budget (every reconstructor of a sweep sees the same
degraded images at a level).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from recon_core.models.batches import SplitData
from recon_core.physics.base import Acquisition


@dataclass
class InputBatch:
    """One batch of a cell on the models' device: image ids, clean images, true masks (or None), and,
    for a reconstructor's road, the measurement and the degraded image a viewer sees."""

    start: int
    ids: list[str]
    clean: torch.Tensor
    truth: torch.Tensor | None
    measurement: torch.Tensor | None
    degraded: torch.Tensor | None


Prepared = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]
"""A batch on the host: clean images, true masks, measurement, degraded image (the last two None when clean)."""


class KeptInputs:
    """Each level's prepared batches of one split, kept for the next cell at that level within `budget` bytes.

    Clean images and masks are views of the split (no copy); the measurement and the degraded image
    (the same tensor for X-ray) are what counts against the budget. A level that does not fit is
    drawn again by each cell, with the same numbers.
    """

    def __init__(self, data: SplitData, budget: int = 2 * 2**30) -> None:
        self.data, self.budget = data, budget
        self.levels: dict[tuple[float, int], list[Prepared]] = {}
        self.used = 0

    def get(self, level: float, batch_size: int) -> list[Prepared] | None:
        """The kept batches of a level at this batch size, or None."""
        return self.levels.get((level, batch_size))

    @staticmethod
    def size(batches: list[Prepared]) -> int:
        """Bytes of the measurements and degraded images of `batches` (a tensor shared by both counted once)."""
        arrays = {id(t): t for batch in batches for t in batch[2:] if t is not None}
        return sum(t.element_size() * t.nelement() for t in arrays.values())

    def fits(self, batches: list[Prepared]) -> bool:
        """Whether `batches` fit in what is left of the budget."""
        return self.used + self.size(batches) <= self.budget

    def keep(self, level: float, batch_size: int, batches: list[Prepared]) -> None:
        """Keeps a level's batches (all of them, in order) when they fit in what is left of the budget."""
        if self.fits(batches):
            self.levels[level, batch_size] = batches
            self.used += self.size(batches)


def preparing_workers(device: torch.device) -> int:
    """Threads drawing noise ahead of the models: none for a CPU device, up to 8 beside a GPU.

    On the CPU the models' own threads use every core; a drawing thread beside them only makes
    them wait for each other (measured: the sweep of one cell 20–30 % slower on 2 cores).
    """
    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


def _on_device(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A CPU tensor on the models' device; pinned first for a GPU, so the copy overlaps the models' work."""
    if tensor is None or device.type == "cpu":
        return tensor
    return (tensor.pin_memory() if device.type == "cuda" else tensor).to(device, non_blocking=True)


def input_batches(data: SplitData, physics: Acquisition, level: float | None, batch_size: int,
                  device: torch.device, workers: int | None = None,
                  kept: KeptInputs | None = None) -> Iterator[InputBatch]:
    """The batches of `data` in order, each degraded by `physics` at `level` (None: the clean road), on `device`.

    Up to `workers` batches (default `preparing_workers(device)`; 0: none, inline) are prepared ahead,
    each in its own thread; their noise is the same as a batch-at-a-time loop's, whatever the batch size. With
    `kept`, a level drawn before is served from it, and a level drawn now is offered to it.
    """
    ids = data.rows["image_id"].tolist()
    if kept is not None and kept.data is not data:
        raise ValueError("input_batches: the kept inputs belong to another split")
    if level is not None and kept is not None and (stored := kept.get(level, batch_size)) is not None:
        for lo, prepared in zip(range(0, len(ids), batch_size), stored, strict=True):
            yield _on_device_batch(lo, prepared, ids, batch_size, device)
        return

    def prepare(lo: int) -> Prepared:
        clean = torch.from_numpy(data.images[lo:lo + batch_size][:, None])
        truth = None if data.masks is None else torch.from_numpy(data.masks[lo:lo + batch_size][:, None])
        if level is None:
            return clean, truth, None, None
        measurement = physics.measure(clean, level, ids[lo:lo + batch_size])
        return clean, truth, measurement, physics.to_image(measurement, level)

    ahead = preparing_workers(device) if workers is None else workers
    drawn: list[Prepared] | None = [] if level is not None and kept is not None else None
    for start, prepared in _prepared_in_order(prepare, range(0, len(ids), batch_size), ahead):
        if drawn is not None and kept is not None:  # collected while the level can still be kept
            drawn.append(prepared)
            drawn = drawn if kept.fits(drawn) else None
        yield _on_device_batch(start, prepared, ids, batch_size, device)
    if drawn is not None and kept is not None and level is not None:
        kept.keep(level, batch_size, drawn)


def _prepared_in_order(prepare: Callable[[int], Prepared], starts: range,
                       ahead: int) -> Iterator[tuple[int, Prepared]]:
    """(start, prepare(start)) in order: inline for `ahead` 0, else up to `ahead` batches prepared by threads."""
    if ahead == 0:
        yield from ((lo, prepare(lo)) for lo in starts)
        return
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="tandem-inputs") as pool:
        pending: deque[tuple[int, Future[Prepared]]] = deque()
        for lo in starts:
            pending.append((lo, pool.submit(prepare, lo)))
            while len(pending) > ahead or (pending and lo == starts[-1]):
                start, future = pending.popleft()
                yield start, future.result()


def _on_device_batch(lo: int, prepared: Prepared, ids: list[str], batch_size: int,
                     device: torch.device) -> InputBatch:
    """A prepared batch, moved to the models' device (true masks stay on the host, where Dice is computed)."""
    clean, truth, measurement, degraded = prepared
    moved = _on_device(measurement, device)
    return InputBatch(lo, ids[lo:lo + batch_size], _on_device(clean, device), truth, moved,
                      moved if degraded is measurement else _on_device(degraded, device))
