"""AppTest runs of the failure-case workbench: the worst-cases grid, stepping through cases, the sliders' pictures,
a sampler's spread against its error, and MRI's Dice-drop cases."""

from __future__ import annotations

import pandas as pd
import pytest

from pages.ui.sidebar import scoped
from recon_core.explain.cases import worst_first
from recon_core.fairness.flips import flip_table
from recon_core.store import CLEAN, queries
from tests.test_app import run_page


def image_urls(at) -> list[str]:
    """The media URLs of the page's images (a URL names its bytes: a redrawn picture gets a new one)."""
    return [element.proto.imgs[0].url for element in at.get("image")]


def grid_buttons(at) -> list:
    """The worst-cases grid's buttons, in the grid's order."""
    return [b for b in at.button if b.key and b.key.startswith("fail_open_")]


@pytest.fixture
def workbench(built_store, monkeypatch):
    """The page on the tiny run's `none` at 300 photons with every case listed (one is always there)."""
    store, key, cache = built_store
    at = run_page("pages/failures.py", str(store.path), monkeypatch, str(cache))
    at.selectbox(key=scoped("fail_recon", key)).set_value("none").run()
    at.select_slider(key=scoped("level", key)).set_value(300.0).run()
    at.toggle(key="fail_only").set_value(False).run()
    assert not at.exception, at.exception
    return at, store, key


def test_grid_shows_the_worst_cases_first_and_opens_one_with_a_click(workbench):
    at, store, key = workbench
    thresholds = queries.thresholds(store, key)
    table = flip_table(queries.image_rows(store, key, CLEAN, 0.0), queries.image_rows(store, key, "none", 300.0),
                       sorted(thresholds), thresholds)
    expected = worst_first(table).head(12)
    buttons = grid_buttons(at)
    assert [b.label.split(" · ")[0] for b in buttons] == expected.image_id.tolist()
    assert [b.label.split(" · ")[1].split()[0] for b in buttons] == expected.label.tolist()
    assert len(at.get("image")) == len(buttons) + 4  # a thumbnail each; wipe, error map, two overlays
    assert any("largest score change in the wrong direction first" in c.value for c in at.caption)
    cases = at.dataframe[1].value  # the table of every case keeps the grid's order
    assert cases["change towards a wrong call"].is_monotonic_decreasing
    buttons[3].click().run()
    assert not at.exception
    picked = f"{expected.image_id.iloc[3]} · {expected.label.iloc[3]}"
    assert at.selectbox(key=scoped("fail_case", key)).value == picked


def test_next_and_previous_step_through_the_cases_with_keys(workbench):
    at, _, key = workbench
    cases = at.dataframe[1].value  # every case, in the picker's order (fewer than 200 here)
    ids = [f"{i} · {lb}" for i, lb in zip(cases["image"], cases["finding"], strict=True)]
    assert at.selectbox(key=scoped("fail_case", key)).value == ids[0]
    assert at.button(key="fail_next").proto.shortcut == "j" and at.button(key="fail_previous").proto.shortcut == "k"
    before = image_urls(at)[-4:]
    at.button(key="fail_next").click().run()
    assert not at.exception and at.selectbox(key=scoped("fail_case", key)).value == ids[1]
    assert image_urls(at)[-4:] != before  # another case's pictures
    at.button(key="fail_previous").click().run()
    assert at.selectbox(key=scoped("fail_case", key)).value == ids[0]
    at.button(key="fail_previous").click().run()  # before the first: round to the last
    assert at.selectbox(key=scoped("fail_case", key)).value == ids[-1]


def test_the_sliders_redraw_their_pictures_only(workbench):
    at, _, _ = workbench
    wipe, error, clean_overlay, recon_overlay = image_urls(at)[-4:]
    at.slider(key="fail_wipe").set_value(100).run()
    now = image_urls(at)[-4:]
    assert now[0] != wipe and now[1:] == [error, clean_overlay, recon_overlay]
    at.slider(key="fail_opacity").set_value(0).run()  # no paint: both overlays are their gray images
    unpainted = image_urls(at)[-4:]
    assert unpainted[2] != clean_overlay and unpainted[3] != recon_overlay and unpainted[:2] == now[:2]
    at.slider(key="fail_opacity").set_value(80).run()
    at.slider(key="fail_threshold").set_value(1.0).run()  # nothing above the top quantile: gray again
    assert not at.exception and image_urls(at)[-4:] == unpainted
    assert any("the top 0%" in c.value for c in at.caption)


def test_a_samplers_case_shows_its_spread_against_its_error(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/failures.py", str(store.path), monkeypatch, str(cache))
    at.select_slider(key=scoped("level", key)).set_value(300.0).run()
    at.selectbox(key=scoped("fail_recon", key)).set_value("diffusion").run()
    at.toggle(key="fail_only").set_value(False).run()
    assert not at.exception
    image_id = at.selectbox(key=scoped("fail_case", key)).value.split(" · ")[0]
    stored = queries.image_rows(store, key, "diffusion", 300.0).set_index("image_id").spread_error_rho[image_id]
    spread = next(m.value for m in at.markdown if "highest spread hold" in m.value)
    assert f"(stored by the run: {stored:.2f})" in spread
    assert len(at.get("image")) == len(grid_buttons(at)) + 5  # and the posterior std
    scores = at.dataframe[-1].value
    assert {"finding", "clean", "reconstructed", "samples' lowest", "samples' highest"} <= set(scores.columns)
    assert (scores["samples' lowest"] <= scores["samples' highest"]).all() and (scores.samples >= 2).all()


def test_mri_cases_are_ranked_by_their_dice_drop(mri_store, monkeypatch):
    store, _, cache = mri_store
    at = run_page("pages/failures.py", str(store.path), monkeypatch, str(cache))
    assert at.radio(key="fail_rank").value == "dice"
    cases = at.dataframe[1].value
    assert pd.Series(cases["Dice drop"]).is_monotonic_decreasing
    labels = [b.label for b in grid_buttons(at)]
    assert [lb.split(" · ")[0] for lb in labels] == cases["image"].head(12).tolist() and "Dice" in labels[0]
    before = image_urls(at)[-2:]
    at.slider(key="fail_opacity").set_value(0).run()
    assert not at.exception and image_urls(at)[-2:] != before
    assert any("segmenter's evidence" in c.value for c in at.caption)
