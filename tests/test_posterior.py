"""A sampler's posterior is judged: calibration of its spread, each sample's diagnostic calls, stored per image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from recon_core.config_loader import load_config
from recon_core.fairness.calibration import calibration_curve
from recon_core.metrics.uncertainty import BIN_EDGES, calibration_bins, spearman_rows, spread_calibration
from recon_core.reconstructors.base import Reconstructor
from recon_core.runner.evaluate import evaluate_cell
from recon_core.runner.study import split_data, train_models
from recon_core.store import queries
from tests.conftest import ROOT


def test_spearman_rows_equal_scipy_with_ties_and_are_zero_for_a_constant_row():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 200), generator=g).float()  # many ties
    b = torch.rand(3, 200, generator=g) + 0.1 * a
    expected = [stats.spearmanr(a[i], b[i]).statistic for i in range(3)]
    assert spearman_rows(a, b) == pytest.approx(expected, abs=1e-9)
    assert spearman_rows(torch.ones(2, 10), torch.rand(2, 10)).tolist() == [0.0, 0.0]


def test_a_calibrated_posterior_covers_95_percent_and_ranks_its_error_an_overconfident_one_does_not():
    """Truth drawn like one more sample: coverage ≈ 0.95 and a positive rank correlation; a spread shrunk
    tenfold covers far less; a spread unrelated to the error correlates with nothing."""
    g = torch.Generator().manual_seed(1)
    n, shape = 4, (6, 1, 48, 48)
    centre, scale = torch.rand(shape, generator=g), 0.02 + 0.1 * torch.rand(shape, generator=g)
    samples = centre + scale * torch.randn(n, *shape, generator=g)
    truth = centre + scale * torch.randn(shape, generator=g)
    mean, std = samples.mean(0), samples.std(0)
    good = spread_calibration(mean, std, truth, n)
    assert np.all(np.abs(good["interval_coverage"] - 0.95) < 0.02)
    assert np.all(good["spread_error_rho"] > 0.2)  # ≈ 0.33 here: even an exact posterior of 4 draws ranks noisily
    inside = (truth > 0).flatten(1)  # the body: pixels with a positive clean value
    expected = (std.flatten(1) * inside).sum(1) / inside.sum(1)
    assert good["posterior_std"] == pytest.approx(expected.double().numpy(), rel=1e-5)
    overconfident = spread_calibration(mean, std / 10, truth, n)
    assert np.all(overconfident["interval_coverage"] < 0.5)
    unrelated = spread_calibration(mean, std[torch.randperm(6, generator=g)].flip(-1), truth, n)
    assert np.all(np.abs(unrelated["spread_error_rho"]) < 0.1)
    with pytest.raises(ValueError, match="at least 2 posterior samples"):
        spread_calibration(mean, std, truth, 1)


def test_calibration_bins_hold_every_pixel_once_and_its_squared_error():
    g = torch.Generator().manual_seed(2)
    mean, clean = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    std = torch.rand(2, 1, 16, 16, generator=g) * 0.4
    sums = calibration_bins(mean, std, clean)
    assert sums.shape == (2, len(BIN_EDGES) - 1, 3)
    assert sums[:, :, 0].sum(1).tolist() == [256, 256]
    assert sums[:, :, 1].sum(1) == pytest.approx(std.flatten(1).sum(1).double().numpy())
    assert sums[:, :, 2].sum(1) == pytest.approx((mean - clean).flatten(1).double().square().sum(1).numpy())


def test_a_sampler_cell_stores_its_spread_calibration_sample_calls_and_curve(built_store):
    """tiny.yaml draws 2 posterior samples: every test image gets the calibration metrics and a sample flip
    rate that equals the stored per-sample scores against the thresholds; deterministic reconstructors get none."""
    store, key, _ = built_store
    level = float(store.query("SELECT max(level) FROM image_metrics WHERE config_hash = ? AND reconstructor = "
                              "'diffusion'", [key]).iloc[0, 0])
    rows = queries.image_rows(store, key, "diffusion", level)
    for column in ("spread_error_rho", "interval_coverage", "posterior_std", "sample_flip"):
        assert rows[column].notna().all(), column
    assert rows.posterior_std.gt(0).all() and rows.interval_coverage.between(0, 1).all()
    assert rows.spread_error_rho.between(-1, 1).all()
    assert "spread_error_rho" not in queries.image_rows(store, key, "none", level)  # deterministic: no such column
    drawn = store.query("""SELECT image_id, draw, name, value FROM sample_scores WHERE config_hash = ?
                           AND reconstructor = 'diffusion' AND level = ?""", [key, level])
    thresholds = dict(store.query("SELECT label, threshold FROM thresholds WHERE config_hash = ?", [key]).values)
    labels = sorted(thresholds)
    assert set(drawn.draw) == {0, 1} and set(labels) <= set(drawn.name)
    calls = drawn[drawn.name.isin(labels)].assign(call=lambda d: d.value >= d.name.map(thresholds))
    mean_call = {(r.image_id, lb): r[f"score:{lb}"] >= thresholds[lb] for _, r in rows.iterrows() for lb in labels}
    share = calls.groupby(["image_id", "name"]).call.mean()  # the draws' majority; the mean's call on a tie
    reference = {k: mean_call[k] if v == 0.5 else v > 0.5 for k, v in share.items()}
    calls["flip"] = [c != reference[i, lb] for i, lb, c in zip(calls.image_id, calls.name, calls.call, strict=True)]
    per_image = calls.groupby(["image_id", "draw"]).flip.any().groupby("image_id").mean()
    assert per_image.reindex(rows.image_id).to_numpy() == pytest.approx(rows.sample_flip.to_numpy())
    curve = store.query("""SELECT image_id, sum(pixels) AS pixels FROM image_calibration WHERE config_hash = ?
                           AND reconstructor = 'diffusion' AND level = ? GROUP BY image_id""", [key, level])
    size = store.query("SELECT height * width FROM examples WHERE config_hash = ? AND kind = 'clean' LIMIT 1",
                       [key]).iloc[0, 0]
    assert len(curve) == len(rows) and (curve.pixels == size).all()
    aggregates = store.query("""SELECT attribute, grp, estimate, ci_low, ci_high FROM aggregates
                                WHERE config_hash = ? AND reconstructor = 'diffusion' AND level = ?
                                AND metric = 'spread_error_rho'""", [key, level])
    assert {"all", "sex"} <= set(aggregates.attribute)
    assert aggregates[aggregates.attribute.isin(["all", "sex"])].estimate.notna().all()  # small groups: NaN


class NoisyZeroFilled(Reconstructor):
    """A sampler for the test: the zero-filled image plus each draw's own seeded noise (n = 3 draws)."""

    name = "noisy_zero_filled"

    def reconstruct(self, degraded, physics, level, measurement=None, image_ids=None):
        return self.reconstruct_samples(degraded, physics, level, measurement, image_ids).mean(0)

    def reconstruct_samples(self, degraded, physics, level, measurement=None, image_ids=None):
        g = torch.Generator().manual_seed(7)
        return (degraded[None] + 0.05 * torch.randn(3, *degraded.shape, generator=g)).clamp(0, 1)


def test_each_mri_posterior_sample_is_segmented_and_a_large_dice_change_counts_as_a_flip(mri_store):
    """Every sample goes to the segmenter too: its Dice is stored per draw, and the Dice flip rate is the share
    of draws whose Dice moved by more than the configured change from the reported reconstruction's."""
    _, _, cache = mri_store
    config = load_config(ROOT / "configs" / "tiny-mri.yaml")
    models = train_models(config, cache / "checkpoints", torch.device("cpu"), fit_reconstructors=False)
    test = split_data(models.cohort, "test")
    result = evaluate_cell(test, models.task_models, models.physics, NoisyZeroFilled(config, torch.device("cpu")),
                           4.0, torch.device("cpu"), 16, [], thresholds=models.thresholds, dice_change=0.05)
    dice = result.samples[result.samples.name == "dice"].pivot(index="image_id", columns="draw", values="value")
    assert dice.shape == (len(test), 3)
    metrics = result.metrics.set_index("image_id")
    moved = (dice.sub(metrics.dice.reindex(dice.index), axis=0).abs() > 0.05).mean(1)
    assert moved.to_numpy() == pytest.approx(metrics.sample_dice_flip.reindex(dice.index).to_numpy())
    assert metrics.spread_error_rho.notna().all() and set(result.calibration.image_id) == set(metrics.index)
    with pytest.raises(ValueError, match="operating thresholds"):
        evaluate_cell(test, models.task_models, models.physics, NoisyZeroFilled(config, torch.device("cpu")), 4.0,
                      torch.device("cpu"), 16, [])


def test_calibration_curve_pools_image_sums_per_group_and_a_calibrated_posterior_lies_on_its_line():
    """Bins pool every image's sums; for a posterior whose truth is one more draw the RMS error grows with the
    predicted std, near the line std·√(1 + 1/n) where the 4-draw std estimate is not too noisy (binning on an
    estimate regresses to the mean: low bins sit above the line); a tenfold overconfident spread sits far above."""
    g = torch.Generator().manual_seed(3)
    n, shape = 4, (40, 1, 32, 32)
    centre, scale = 0.5 + 0.3 * torch.rand(shape, generator=g), 0.01 + 0.1 * torch.rand(shape, generator=g)  # inside
    samples = centre + scale * torch.randn(n, *shape, generator=g)
    truth = centre + scale * torch.randn(shape, generator=g)
    sums = calibration_bins(samples.mean(0), samples.std(0), truth)
    ids = [f"i{k:02d}" for k in range(40)]
    rows = pd.DataFrame({"image_id": np.repeat(ids, sums.shape[1]), "bin": np.tile(np.arange(sums.shape[1]), 40),
                         "pixels": sums[:, :, 0].ravel(), "sum_std": sums[:, :, 1].ravel(),
                         "sum_sq_error": sums[:, :, 2].ravel(), "sex": np.repeat(["F", "M"] * 20, sums.shape[1])})
    curve = calibration_curve(rows, ["sex"])
    everyone = curve[curve.attribute == "all"]
    assert everyone.pixels.sum() == 40 * 32 * 32 and set(curve.grp) == {"all", "F", "M"}
    assert (curve[curve.attribute == "sex"].groupby("bin").pixels.sum() == everyone.set_index("bin").pixels).all()
    busy = everyone[everyone.pixels > 1000]
    ratio = busy.rmse / (busy.predicted_std * np.sqrt(1 + 1 / n))
    assert len(busy) >= 4 and busy.rmse.is_monotonic_increasing and ratio.between(0.7, 3.5).all()
    assert ratio.iloc[-2:].between(0.7, 1.2).all()
    shrunk = calibration_bins(samples.mean(0), samples.std(0) / 10, truth)
    rows[["pixels", "sum_std", "sum_sq_error"]] = shrunk.reshape(-1, 3)
    far = calibration_curve(rows)
    far = far[far.pixels > 1000]
    assert (far.rmse / (far.predicted_std * np.sqrt(1 + 1 / n)) > 5).all()
    assert calibration_curve(rows.iloc[:0]).empty


def test_a_black_background_does_not_lift_the_rank_correlation_of_unrelated_maps():
    """Half the image black (clean 0) with spread and error both 0 there: taken inside the body only, unrelated
    maps still correlate ≈ 0, and coverage and spread are the body's."""
    g = torch.Generator().manual_seed(4)
    clean = torch.rand(4, 1, 32, 32, generator=g) * 0.5 + 0.25
    clean[..., :16] = 0
    std = torch.rand(4, 1, 32, 32, generator=g) * 0.1
    error = torch.rand(4, 1, 32, 32, generator=g) * 0.1
    std[..., :16], error[..., :16] = 0, 0
    out = spread_calibration(clean + error, std, clean, 4)
    assert np.all(np.abs(out["spread_error_rho"]) < 0.15)
    assert out["posterior_std"] == pytest.approx(std[..., 16:].flatten(1).mean(1).double().numpy())
    assert calibration_bins(clean + error, std, clean)[:, :, 0].sum(1).tolist() == [512] * 4
