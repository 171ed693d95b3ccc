"""Where batches are made: training batches on the model's device, evaluation inputs drawn ahead by threads.

Training on a GPU gathers batches from a copy of the split on the device and degrades them there
from one seeded generator; evaluation noise stays per (seed, image, level) whatever the batch
size, the number of threads drawing it or the device. The CUDA tests run where CUDA is present
and are skipped elsewhere (CI has no GPU); the same code paths are exercised on the CPU here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core.config import ConfigError
from recon_core.config_loader import from_dict, load_config
from recon_core.modalities import get_modality
from recon_core.models.batches import DeviceBatches, SplitData, TrainingBatch
from recon_core.models.contract import run_training
from recon_core.models.losses import MaskedBCE
from recon_core.physics import KspaceUndersampling, ProjectionDose
from recon_core.progress import silent
from recon_core.reconstructors import build_reconstructor
from recon_core.runner.evaluate import evaluate_cell
from recon_core.runner.inputs import KeptInputs, input_batches
from recon_core.runner.study import split_data
from tests.conftest import TINY

CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")


def split(n: int = 24, size: int = 32, masks: bool = False) -> SplitData:
    """A split of smooth random images with rows, two labels and (optionally) masks."""
    rng = np.random.default_rng(0)
    images = rng.random((n, size, size)).astype(np.float32)
    rows = pd.DataFrame({"image_id": [f"im{i}" for i in range(n)], "subject_id": [f"s{i}" for i in range(n)],
                         "sex": rng.choice(["F", "M"], n), "age": rng.integers(20, 90, n).astype(float),
                         "a": rng.integers(0, 2, n).astype(float), "b": rng.integers(0, 2, n).astype(float)})
    mask = (rng.random((n, size, size)) > 0.7).astype(np.uint8) if masks else None
    return SplitData(rows, images, ("a", "b"), mask, ProjectionDose(seed=0))


def test_device_batches_equal_host_batches():
    data = split(masks=True)
    idx = np.array([3, 3, 17, 0, 9])
    host, device = data.batch(idx), DeviceBatches(data, CPU).batch(idx)
    assert torch.equal(host.images, device.images) and torch.equal(host.targets, device.targets)
    assert torch.equal(host.masks, device.masks) and host.masks.dtype == device.masks.dtype == torch.int64
    pd.testing.assert_frame_equal(host.rows, device.rows)


def test_a_cpu_model_keeps_per_image_training_noise():
    """On the CPU, training noise is each image's own ('train-<step>-<i>'), as before: stored weights hold."""
    data = split()
    batch = data.degraded_sampler((300.0,), 0, "unet-train", 4, CPU)(7)
    again = data.physics.measure(batch.images, 300.0, [f"train-7-{i}" for i in range(4)])
    assert torch.equal(batch.measurement, again)


@pytest.mark.parametrize("physics", [ProjectionDose(seed=0), KspaceUndersampling(seed=0, snr=20.0)])
def test_batch_training_draws_are_seeded_shaped_and_in_range(physics):
    clean = torch.from_numpy(split().images[:, None])
    level = 300.0 if isinstance(physics, ProjectionDose) else 4.0
    first = physics.measure_batch(clean, level, torch.Generator().manual_seed(5))
    assert torch.equal(first, physics.measure_batch(clean, level, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, physics.measure_batch(clean, level, torch.Generator().manual_seed(6)))
    assert first.shape == physics.measure(clean, level, [f"i{k}" for k in range(len(clean))]).shape
    image = physics.to_image(first, level)
    assert image.shape == clean.shape and image.min() >= 0 and image.max() <= 1


def test_batch_training_noise_has_the_physics_variance():
    """A flat phantom's batch draws have the delta-method variance of the per-image model (Poisson + electronic)."""
    physics, dose, value = ProjectionDose(seed=0), 1000.0, 0.3
    clean = torch.full((16, 1, 64, 64), value)
    batch = physics.measure_batch(clean, dose, torch.Generator().manual_seed(1))
    per_image = physics.measure(clean, dose, [f"i{k}" for k in range(16)])
    assert batch.var().item() == pytest.approx(per_image.var().item(), rel=0.05)
    assert batch.mean().item() == pytest.approx(per_image.mean().item(), abs=2e-3)


def test_noise_free_kspace_batch_draws_equal_the_per_image_model():
    physics = KspaceUndersampling(seed=0, mask_kind="cartesian_random")
    clean = torch.from_numpy(split().images[:, None])
    expected = physics.measure(clean, 4.0, [f"i{k}" for k in range(len(clean))])
    assert torch.equal(physics.measure_batch(clean, 4.0, torch.Generator().manual_seed(0)), expected)


@pytest.mark.parametrize("physics", [ProjectionDose(seed=3), KspaceUndersampling(seed=3, snr=30.0)])
def test_evaluation_inputs_do_not_depend_on_batch_size_or_threads(physics):
    data = split(n=23)
    level = 300.0 if isinstance(physics, ProjectionDose) else 4.0

    def inputs(batch_size: int, workers: int) -> torch.Tensor:
        return torch.cat([b.measurement for b in input_batches(data, physics, level, batch_size, CPU, workers)])

    reference = inputs(23, 1)
    for batch_size, workers in ((4, 0), (4, 1), (5, 3), (1, 8)):
        assert torch.equal(inputs(batch_size, workers), reference)
    batches = list(input_batches(data, physics, level, 5, CPU, 3))
    assert [b.start for b in batches] == [0, 5, 10, 15, 20]
    assert sum(len(b.ids) for b in batches) == 23 and batches[-1].ids == data.rows.image_id.tolist()[20:]


def test_a_level_is_drawn_once_and_served_unchanged():
    data, physics = split(n=23), ProjectionDose(seed=3)
    kept = KeptInputs(data)
    first = [b.degraded.clone() for b in input_batches(data, physics, 300.0, 5, CPU, kept=kept)]
    assert kept.get(300.0, 5) is not None and kept.used == 23 * 32 * 32 * 4  # X-ray: one tensor for both
    again = [b.degraded for b in input_batches(data, physics, 300.0, 5, CPU, kept=kept)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    small = KeptInputs(data, budget=1000)
    list(input_batches(data, physics, 300.0, 5, CPU, kept=small))
    assert small.get(300.0, 5) is None and small.used == 0  # too big to keep: drawn again next time
    with pytest.raises(ValueError, match="another split"):
        next(input_batches(split(n=5), physics, 300.0, 5, CPU, kept=kept))


def tiny_cell(device: torch.device, batch_size: int, reconstructor: str = "unet") -> pd.DataFrame:
    """One untrained-weights cell of the tiny study on `device`: its per-image metrics and scores, merged."""
    config = load_config(TINY)
    modality = get_modality(config.modality)
    cohort = modality.cohort_source(config).load()
    test = split_data(cohort, "test")
    task_models = modality.task_models(config, cohort.labels, device)
    recon = build_reconstructor(reconstructor, config, device)
    for net in [recon.net, *(model.net for model in task_models)]:
        net.eval()  # as after fit or load: batch norm from running statistics, not from the batch
    result = evaluate_cell(test, task_models, modality.build_physics(config), recon, 300.0, device, batch_size, [])
    wide = result.scores.pivot(index="image_id", columns="label", values="score")
    return result.metrics.set_index("image_id").join(wide).sort_index()


def test_a_cell_does_not_depend_on_the_batch_size():
    small, large = tiny_cell(CPU, 3), tiny_cell(CPU, 64)
    numbers = small.select_dtypes("number").columns
    np.testing.assert_allclose(small[numbers], large[numbers], rtol=1e-4, atol=1e-5)


@CUDA
def test_cuda_cell_equals_the_cpu_cell():
    """The same noise on both devices: a cell's numbers agree to float tolerance."""
    cpu, cuda = tiny_cell(CPU, 16), tiny_cell(torch.device("cuda"), 16)
    numbers = cpu.select_dtypes("number").columns
    np.testing.assert_allclose(cpu[numbers], cuda[numbers], rtol=1e-3, atol=1e-3)


@CUDA
def test_cuda_training_batches_are_made_on_the_device():
    cuda = torch.device("cuda")
    data = split(masks=True)
    batch = data.degraded_sampler((300.0, 1000.0), 0, "unet-train", 8, cuda)(0)
    assert batch.images.is_cuda and batch.degraded.is_cuda and batch.targets.is_cuda and batch.masks.is_cuda
    assert data.sampler(0, "classifier-train", 8, cuda)(0).images.is_cuda
    tiny = load_config(TINY)
    config = dataclasses.replace(tiny, reconstructors=dataclasses.replace(
        tiny.reconstructors, unet=dataclasses.replace(tiny.reconstructors.unet, steps=3)))
    unet = build_reconstructor("unet", config, cuda)
    run_training(unet.training_plan(data, {}), silent, "cuda smoke")
    assert next(unet.net.parameters()).is_cuda


def test_bf16_is_a_config_option_of_its_own_run_and_moves_metrics_little():
    """'bf16' runs the networks under bfloat16 autocast: a run of its own (hash), float32 outputs, close values."""
    tiny = load_config(TINY)
    bf16 = dataclasses.replace(tiny, evaluation=dataclasses.replace(tiny.evaluation, precision="bf16"))
    assert bf16.config_hash() != tiny.config_hash()
    assert "precision" not in tiny.to_dict()["evaluation"]  # float32 stays out of the hash: stored runs keep theirs
    with pytest.raises(ConfigError, match="precision"):
        from_dict({**tiny.to_dict(), "evaluation": {**tiny.to_dict()["evaluation"], "precision": "fp8"}})
    modality = get_modality(tiny.modality)
    cohort = modality.cohort_source(tiny).load()
    test = split_data(cohort, "test")
    task_models = modality.task_models(tiny, cohort.labels, CPU)
    recon = build_reconstructor("unet", tiny, CPU)
    for net in [recon.net, *(model.net for model in task_models)]:
        net.eval()
    physics = modality.build_physics(tiny)
    full, half = (evaluate_cell(test, task_models, physics, recon, 300.0, CPU, 16, [], precision=p)
                  for p in ("float32", "bf16"))
    assert half.scores.score.dtype == np.float64 and half.metrics.psnr.notna().all()
    np.testing.assert_allclose(half.scores.score, full.scores.score, atol=0.05)
    np.testing.assert_allclose(half.metrics.psnr, full.metrics.psnr, atol=0.5)


@CUDA
def test_masked_bce_on_cuda_equals_the_cpu_loss():
    """The GPU form (no boolean indexing, no host sync) gives the CPU's value; unknown labels carry no loss."""
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.5, 0.7]])
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), 0.0]])
    batch = TrainingBatch(torch.zeros(3, 1, 4, 4), pd.DataFrame(index=range(3)), targets)
    torch.testing.assert_close(MaskedBCE()(logits.cuda(), batch.to(torch.device("cuda"))).cpu(),
                               MaskedBCE()(logits, batch))
