"""The one model contract: training batches carry rows, frozen models stay frozen, losses compose, fit-or-load once.

A reconstructor defined here trains with a frozen classifier in its loss (the shape a fairness
loss takes): the test proves the seam the mitigation strategies need, including the three
silent bugs of the reference code's mitigation (a constant sex column, a loss without
gradient, a frozen model that was not frozen).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core.config import ReconstructorsConfig, StudyConfig, UNetConfig, stable_hash
from recon_core.diagnostics import Classifier
from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.contract import Objective, TrainableModel, TrainingPlan, adam
from recon_core.models.losses import ImageLoss, Loss, MaskedBCE
from recon_core.physics import ProjectionDose
from recon_core.reconstructors.unet_denoiser import UNetDenoiser, residual_unet
from tests.test_reconstructors import smooth_images

CPU = torch.device("cpu")


class ScoreGapLoss(Loss):
    """|mean classifier score on women − on men| of the reconstructions: a differentiable group gap."""

    def __init__(self, classifier: torch.nn.Module) -> None:
        self.classifier = classifier
        self.seen: list[set[str]] = []

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        women = torch.from_numpy((batch.rows.sex == "F").to_numpy(copy=True)).to(output.device)
        self.seen.append(set(batch.rows.sex))
        self.frozen_state = (self.classifier.training, any(p.requires_grad for p in self.classifier.parameters()))
        scores = torch.sigmoid(self.classifier(output))[:, 0]
        return (scores[women].mean() - scores[~women].mean()).abs()


class FairUNet(UNetDenoiser):
    """A U-Net trained with MSE + a score-gap term through the frozen classifier it is given."""

    name = "fair_unet"
    uses = ("classifier",)

    def weights_key(self) -> str:
        classifier = Classifier(self.config, ("finding",), self.device).weights_key()
        return stable_hash("fair_unet", super().weights_key(), classifier)

    def training_plan(self, data: SplitData, frozen: Mapping[str, TrainableModel]) -> TrainingPlan:
        cfg = self.config.reconstructors.unet
        self.gap = ScoreGapLoss(frozen["classifier"].net)
        optimiser, schedule = adam(self.net, cfg.learning_rate, cfg.steps)
        return TrainingPlan(cfg.steps, data.degraded_sampler((300.0,), self.config.seed, "fair", cfg.batch_size),
                            [Objective(lambda b: self.net(b.degraded), ImageLoss() + 5.0 * self.gap, optimiser,
                                       schedule)], [self.net], self.device)


def split(n: int = 16, physics=None) -> SplitData:
    rows = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "subject_id": [f"s{k}" for k in range(n)],
                         "sex": ["F", "M"] * (n // 2), "finding": [1.0, 0.0, 0.0, 1.0] * (n // 4)})
    return SplitData(rows, smooth_images(n, 32), ("finding",), None, physics)


@pytest.fixture()
def config() -> StudyConfig:
    unet = UNetConfig(channels=(8, 16), strides=(2,), num_res_units=0, steps=6, batch_size=8, learning_rate=3e-3)
    return StudyConfig(seed=2, reconstructors=ReconstructorsConfig(unet=unet))


def test_a_reconstructor_trains_through_a_frozen_classifier_on_batches_with_rows(config, tmp_path):
    classifier = Classifier(config, ("finding",), CPU)
    frozen_before = {k: v.clone() for k, v in classifier.net.state_dict().items()}
    recon = FairUNet(config, CPU)
    start = {k: v.clone() for k, v in recon.net.state_dict().items()}
    recon.fit(split(physics=ProjectionDose(seed=0)), tmp_path, frozen={"classifier": classifier})
    assert all(seen == {"F", "M"} for seen in recon.gap.seen) and len(recon.gap.seen) == 6  # sex is never constant
    assert all(torch.equal(v, frozen_before[k]) for k, v in classifier.net.state_dict().items())  # not trained
    assert recon.gap.frozen_state == (False, False)  # during training: eval mode, no gradients …
    assert all(p.requires_grad for p in classifier.net.parameters()) and classifier.net.training  # … then restored
    assert not all(torch.equal(v, start[k]) for k, v in recon.net.state_dict().items())  # the reconstructor learnt
    assert recon.checkpoint_path(tmp_path).exists()


def test_the_group_term_carries_gradient_to_every_reconstructor_parameter_and_none_to_the_frozen_model(config):
    classifier = Classifier(config, ("finding",), CPU)
    classifier.net.eval().requires_grad_(False)
    net = residual_unet(config.reconstructors.unet)
    with torch.no_grad():
        net.alpha.fill_(0.5)  # past ReZero's start, so the body's parameters are on the gradient's path
    data = split()
    batch = data.batch(np.arange(8))
    batch.degraded = batch.images + 0.05
    ScoreGapLoss(classifier.net)(net(batch.degraded), batch).backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads.values()), \
        [n for n, g in grads.items() if g is None or float(g.abs().sum()) == 0]
    assert all(p.grad is None for p in classifier.net.parameters())


def test_a_model_that_uses_a_frozen_model_says_so_when_it_is_missing(config, tmp_path):
    with pytest.raises(ValueError, match=r"fair_unet: its training needs the frozen model\(s\) \['classifier'\]"):
        FairUNet(config, CPU).fit(split(physics=ProjectionDose(seed=0)), tmp_path, frozen={})


def test_a_second_fit_loads_and_trains_nothing(config, tmp_path):
    data = split(physics=ProjectionDose(seed=0))
    steps: list[int] = []
    first = UNetDenoiser(config, CPU)
    first.fit(data, tmp_path, progress=lambda stage, done, total: steps.append(done))
    assert steps and steps[-1] == config.reconstructors.unet.steps
    steps.clear()
    again = UNetDenoiser(config, CPU)
    again.fit(data, tmp_path, progress=lambda stage, done, total: steps.append(done))
    assert not steps
    assert all(torch.equal(v, first.net.state_dict()[k]) for k, v in again.net.state_dict().items())


def test_training_batches_carry_their_rows_and_the_same_draws_as_their_images():
    data = split(physics=ProjectionDose(seed=0))
    batches = data.degraded_sampler((3000.0, 300.0), seed=1, stream="x", batch_size=4)
    again = data.degraded_sampler((3000.0, 300.0), seed=1, stream="x", batch_size=4)
    for step in range(3):
        a, b = batches(step), again(step)
        assert torch.equal(a.degraded, b.degraded) and a.rows.image_id.tolist() == b.rows.image_id.tolist()
        ids = a.rows.image_id.str.removeprefix("i").astype(int).to_numpy()
        np.testing.assert_array_equal(a.images[:, 0].numpy(), data.images[ids])  # rows belong to their images
        np.testing.assert_array_equal(a.targets[:, 0].numpy(), data.rows.finding.to_numpy()[ids])
        assert a.level in (3000.0, 300.0) and a.degraded.shape == a.images.shape


def test_losses_compose_by_weight_and_sum():
    batch = split().batch(np.arange(4))
    output = batch.images + 0.1
    combined = 2 * ImageLoss("mse") + ImageLoss("l1")
    expected = 2 * torch.nn.functional.mse_loss(output, batch.images) + torch.nn.functional.l1_loss(output,
                                                                                                     batch.images)
    assert torch.allclose(combined(output, batch), expected)
    logits = torch.zeros(4, 1)
    batch.targets[1, 0] = float("nan")  # unknown labels carry no loss
    assert torch.allclose(MaskedBCE()(logits, batch), torch.tensor(np.log(2.0), dtype=torch.float32))
