"""The failure-case workbench's arithmetic: pictures (recon_core.explain.overlays), case order (explain.cases)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recon_core.explain import cases, overlays
from recon_core.metrics.uncertainty import spearman_rows
from recon_core.plots import ERROR_MAX, LOOKUPS

RNG = np.random.default_rng(7)
IMAGE = RNG.uniform(0, 1, (16, 20))
MAP = RNG.uniform(0, 1, (16, 20))


def test_gray_rgb_clips_to_the_image_range():
    rgb = overlays.gray_rgb(np.array([[-0.5, 0.0, 0.5, 1.0, 2.0, np.nan]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 6, 3)
    assert rgb[0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_wipe_ends_are_one_picture_each_and_between_them_the_divider_splits_the_width():
    clean, recon = overlays.gray_rgb(np.zeros((8, 10))), overlays.gray_rgb(np.ones((8, 10)))
    assert np.array_equal(overlays.wipe(clean, recon, 0.0), clean)
    assert np.array_equal(overlays.wipe(clean, recon, 1.0), recon)
    half = overlays.wipe(clean, recon, 0.5, divider=2)
    assert (half[:, :4] == 0).all() and (half[:, 6:] == 255).all()  # clean on the left, reconstruction right
    assert (half[:, 4:6] == overlays.DIVIDER).all()  # the line at the cut
    assert (overlays.wipe(clean, recon, 0.3, divider=0)[:, 7:] == 255).all()  # the right 30 % reconstructed
    with pytest.raises(ValueError, match="share of the width"):
        overlays.wipe(clean, recon, 1.5)
    with pytest.raises(ValueError, match="one shape"):
        overlays.wipe(clean, recon[:, :5], 0.5)


def test_top_mask_keeps_the_stated_share_of_the_largest_values():
    values = np.arange(100.0).reshape(10, 10)
    assert overlays.top_mask(values, 0.0).all()
    assert not overlays.top_mask(values, 1.0).any()
    kept = overlays.top_mask(values, 0.9)
    assert kept.sum() == 10 and set(values[kept]) == set(range(90, 100))
    assert overlays.top_mask(np.zeros((4, 5)), 0.5).sum() == 10  # ties: still the stated share
    with pytest.raises(ValueError, match="quantile"):
        overlays.top_mask(values, -0.1)


def test_overlay_with_no_opacity_or_full_threshold_is_the_image_exactly():
    image = overlays.gray_rgb(IMAGE)
    assert np.array_equal(overlays.overlay(IMAGE, MAP, 0.0, 0.2, LOOKUPS["map"]), image)
    assert np.array_equal(overlays.overlay(IMAGE, MAP, 1.0, 1.0, LOOKUPS["map"]), image)


def test_overlay_paints_only_the_top_pixels_and_fully_at_opacity_one():
    painted = overlays.overlay(IMAGE, MAP, 1.0, 0.75, LOOKUPS["map"])
    top = overlays.top_mask(MAP, 0.75)
    assert np.array_equal(painted[top], overlays.colourize(MAP, 1.0, LOOKUPS["map"])[top])
    assert np.array_equal(painted[~top], overlays.gray_rgb(IMAGE)[~top])
    half = overlays.overlay(IMAGE, MAP, 0.5, 0.75, LOOKUPS["map"]).astype(int)
    expected = (overlays.gray_rgb(IMAGE)[top].astype(int) + painted[top].astype(int)) / 2
    assert np.abs(half[top] - expected).max() <= 1
    with pytest.raises(ValueError, match="opacity"):
        overlays.overlay(IMAGE, MAP, 1.2, 0.5, LOOKUPS["map"])


def test_error_map_runs_from_zero_to_the_stated_top():
    clean = np.zeros((1, 4))
    recon = np.array([[0.0, overlays.ERROR_TOP / 2, -overlays.ERROR_TOP, 0.9]])
    painted = overlays.error_map(clean, recon, LOOKUPS["error"])
    table = LOOKUPS["error"]
    assert np.array_equal(painted[0, 0], table[0]) and np.array_equal(painted[0, 1], table[128])
    assert np.array_equal(painted[0, 2], table[255]) and np.array_equal(painted[0, 3], table[255])  # clipped
    with pytest.raises(ValueError, match="positive"):
        overlays.colourize(recon, 0.0, table)
    assert overlays.ERROR_TOP == ERROR_MAX  # one error scale on every page


def test_spread_vs_error_counts_the_error_where_the_spread_is_high():
    clean = np.full((10, 10), 0.5)
    std = np.arange(100.0).reshape(10, 10) / 100
    recon = clean.copy()
    recon[9] += 0.2  # all the error in the highest-spread tenth
    summary = overlays.spread_vs_error(std, clean, recon, top_share=0.1)
    assert summary.top_share == pytest.approx(0.1) and summary.error_share == pytest.approx(1.0)
    assert summary.lift == pytest.approx(10.0) and summary.rho > 0.5
    recon = clean.copy()
    recon[0] += 0.2  # all of it where the spread is lowest
    opposite = overlays.spread_vs_error(std, clean, recon, top_share=0.1)
    assert opposite.error_share == 0.0 and opposite.rho < 0


def test_spread_vs_error_is_taken_inside_the_body_with_the_sweeps_correlation():
    clean = RNG.uniform(0, 1, (12, 12))
    clean[:, :4] = 0.0  # background outside the body
    std, recon = RNG.uniform(0, 0.1, (12, 12)), clean + RNG.normal(0, 0.05, (12, 12))
    import torch

    inside = clean > 0
    expected = spearman_rows(torch.from_numpy(std[inside])[None], torch.from_numpy(np.abs(recon - clean)[inside])[None])
    assert overlays.spread_vs_error(std, clean, recon).rho == pytest.approx(float(expected[0]))
    assert overlays.spread_vs_error(std, clean, recon, 0.25).top_share == pytest.approx(round(0.25 * 96) / 96)


def test_png_round_trips():
    from io import BytesIO

    from PIL import Image

    rgb = overlays.enlarge(overlays.gray_rgb(IMAGE), 64)
    assert rgb.shape == (64, 80, 3) and np.array_equal(rgb[:4, :4], np.broadcast_to(rgb[0, 0], (4, 4, 3)))
    assert np.array_equal(np.asarray(Image.open(BytesIO(overlays.png(rgb)))), rgb)


FLIPS = pd.DataFrame({"image_id": ["a", "b", "c", "d", "a"], "label": ["x", "x", "x", "x", "y"],
                      "target": [1, 0, 1, 0, 0], "change": [-0.6, 0.3, 0.2, -0.1, 0.6]})


def test_worst_first_orders_by_the_change_towards_a_wrong_call():
    ranked = cases.worst_first(FLIPS)
    assert list(zip(ranked.image_id, ranked.label, strict=True)) == [("a", "x"), ("a", "y"), ("b", "x"), ("d", "x"),
                                                                     ("c", "x")]
    assert ranked.wrong_way.tolist() == pytest.approx([0.6, 0.6, 0.3, -0.1, -0.2])  # d, c moved the right way


def test_step_wraps_round_and_starts_from_the_first_case():
    ids = ["a", "b", "c"]
    assert cases.step(ids, "a", 1) == "b" and cases.step(ids, "c", 1) == "a"
    assert cases.step(ids, "a", -1) == "c" and cases.step(ids, "gone", 1) == "a"
    with pytest.raises(ValueError, match="no case"):
        cases.step([], None, 1)


def test_with_sample_range_adds_the_samples_lowest_and_highest_score():
    scores = pd.DataFrame({"finding": ["nodule", "effusion"], "clean": [0.2, 0.1], "reconstructed": [0.9, 0.1]})
    samples = pd.DataFrame({"image_id": "a", "draw": [0, 1, 0, 1], "name": ["nodule", "nodule", "effusion", "effusion"],
                            "value": [0.7, 0.95, 0.05, 0.3]})
    table = cases.with_sample_range(scores, samples)
    assert table["samples' lowest"].tolist() == [0.7, 0.05] and table["samples' highest"].tolist() == [0.95, 0.3]
    assert table.samples.tolist() == [2, 2]
    assert cases.with_sample_range(scores, samples.iloc[:0]).equals(scores)
