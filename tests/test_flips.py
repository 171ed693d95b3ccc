"""Decision flips between clean and reconstructed images, and their per-group rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recon_core.fairness.flips import changed_calls, flip_rates, flip_table


def frames():
    ids = [f"i{k}" for k in range(6)]
    base = pd.DataFrame({"image_id": ids, "sex": ["F", "F", "F", "M", "M", "M"], "age_band": "<60",
                         "psnr": 30.0, "target:a": [1, 1, 0, 1, 0, 0], "score:a": [0.9, 0.8, 0.2, 0.7, 0.1, 0.6]})
    recon = base.copy()
    recon["score:a"] = [0.3, 0.85, 0.7, 0.75, 0.2, 0.4]  # i0 lost, i2 invented, i5 corrected
    return base.assign(psnr=np.nan), recon


def test_flip_kinds_and_order():
    clean, recon = frames()
    table = flip_table(clean, recon, ["a"], {"a": 0.5})
    kinds = dict(zip(table.image_id, table.kind, strict=True))
    assert kinds == {"i0": "lost", "i2": "invented", "i5": "corrected", "i1": "unchanged", "i3": "unchanged",
                     "i4": "unchanged"}
    assert table.kind.tolist()[:2] == ["lost", "invented"]
    assert table.change[table.image_id == "i0"].iloc[0] == pytest.approx(-0.6)


def test_flip_rates_per_group():
    clean, recon = frames()
    rates = flip_rates(flip_table(clean, recon, ["a"], {"a": 0.5}), ["sex"], n_resamples=200)
    female = rates[(rates.grp == "F")].set_index("kind")
    assert female.loc["lost", "rate"] == pytest.approx(1 / 2) and female.loc["lost", "of"] == 2
    assert female.loc["invented", "rate"] == pytest.approx(1.0)
    male = rates[(rates.grp == "M")].set_index("kind")
    assert male.loc["lost", "rate"] == 0 and male.loc["invented", "flips"] == 0
    overall = rates[rates.attribute == "all"].set_index("kind")
    assert overall.loc["lost", "rate"] == pytest.approx(1 / 3)
    assert overall.loc["lost", "ci_low"] <= 1 / 3 <= overall.loc["lost", "ci_high"]


def test_changed_calls_names_only_new_errors_largest_change_first():
    rows = [("clean", 0.0, "nodule", 0.24, 0), ("clean", 0.0, "effusion", 0.90, 1), ("clean", 0.0, "mass", 0.70, 0),
            ("diffusion", 100.0, "nodule", 0.99, 0),   # absent, not called on clean, called now: invented
            ("diffusion", 100.0, "effusion", 0.20, 1),  # present, called on clean, missed now: lost
            ("diffusion", 100.0, "mass", 0.20, 0),      # a false alarm removed: not an error, not listed
            ("unet", 100.0, "nodule", 0.45, 0),         # under the threshold: unchanged
            ("unet", 100.0, "effusion", 0.95, 1)]
    scores = pd.DataFrame(rows, columns=["reconstructor", "level", "label", "score", "target"])
    thresholds = {"nodule": 0.5, "effusion": 0.5, "mass": 0.5}
    calls = changed_calls(scores, thresholds, "clean")
    assert list(zip(calls.reconstructor, calls.label, calls.kind, strict=True)) == [("diffusion", "nodule", "invented"),
                                                                       ("diffusion", "effusion", "lost")]
    assert calls.clean_score.tolist() == [0.24, 0.90] and calls.threshold.tolist() == [0.5, 0.5]
    assert changed_calls(scores[scores.reconstructor == "clean"], thresholds, "clean").empty
    assert changed_calls(scores, {"other": 0.5}, "clean").empty  # no threshold for a label: no call made
