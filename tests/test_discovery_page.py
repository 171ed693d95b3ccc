"""AppTest runs of the Weak subgroups page on the tiny X-ray and MRI stores: the ranking as the module makes it
(widenings on a reconstruction only, the degraded image as a named reference), sorted by its stated statistic, the
interval said at the run's level, the selection effect and the size rules in words, the sidebar's choices honoured,
the CSV built only on click; and the Fairness heat map's ★ note as the store counts it."""

from __future__ import annotations

import numpy as np
import pytest

from pages.ui.sidebar import scoped
from recon_core import discovery, exports
from recon_core.results import run_view
from recon_core.store import queries
from recon_core.tables import attribute_text
from tests.test_app import assert_tables_speak_plainly, metric_ids, run_page


@pytest.mark.parametrize("store_fixture", ["built_store", "mri_store"])
def test_the_page_ranks_by_its_statistic_and_says_the_selection_effect(store_fixture, request, monkeypatch):
    store, key, cache = request.getfixturevalue(store_fixture)
    at = run_page("pages/discovery.py", str(store.path), monkeypatch, str(cache))
    assert at.title[0].value == "Weak subgroups"
    ranking = next(d.value for d in at.dataframe if discovery.STATISTIC in d.value.columns)
    statistic = ranking[discovery.STATISTIC].to_numpy()
    assert len(statistic) > 0 and (np.diff(statistic) <= 0).all()
    agg = queries.aggregates(store, key)
    config, reference = queries.run_config(store, key), run_view(store, key).returns_degraded
    found = discovery.discover(agg, discovery.run_minimums(config), exports.ci_level(config), reference)
    assert len(ranking) == len(found.ranked)  # every reconstructor and level is chosen in a fresh sidebar
    assert ranking[discovery.INTERVAL].tolist() == discovery.table(found)[discovery.INTERVAL].tolist()
    assert not set(ranking.reconstructor) & set(reference)
    text = " ".join(m.value for m in at.markdown)
    assert f"{found.scanned} candidate changes were scanned" in text and "winner's curse" in text
    captions = " ".join(c.value for c in at.caption)
    rules = found.minimums
    assert f"at least {rules.group_size} units" in captions and f"at least {rules.positives} positives" in captions
    assert "size rules" in captions and discovery.interval_words(exports.ci_level(config)) in captions
    assert "95 % interval" not in captions + text
    narrowings = int(((found.apart.direction == "narrows") & ~found.apart.reference).sum())
    assert f"Not ranked: {narrowings} narrowings" in captions
    for road in reference:  # the X-ray run's `none`: apart, under its name, never the top
        assert f"Reference, not ranked: {road} (the degraded image)" in captions
        assert f"with {road} at" not in text
    button = next(b for b in at.get("download_button") if b.proto.label == "Download the ranking (CSV)")
    assert button.proto.deferred_file_id and not button.proto.url and button.proto.ignore_rerun  # built on click
    assert assert_tables_speak_plainly(at, metric_ids(store, key), "discovery") >= 1
    attribute = at.selectbox(key=scoped("attribute", key)).value
    at.toggle(key=scoped("disc_one_attribute", key)).set_value(True).run()
    narrowed = next(d.value for d in at.dataframe if discovery.STATISTIC in d.value.columns)
    assert set(narrowed["subgroups by"]) == {attribute_text(attribute)} and len(narrowed) < len(ranking)


def test_the_page_follows_the_sidebars_reconstructors(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/discovery.py", str(store.path), monkeypatch, str(cache))
    picker = at.multiselect(key=scoped("reconstructors", key))
    keep = [r for r in picker.value if r not in run_view(store, key).returns_degraded][:1]
    picker.set_value(keep).run()
    ranking = next(d.value for d in at.dataframe if discovery.STATISTIC in d.value.columns)
    assert set(ranking.reconstructor) == set(keep)
    config = queries.run_config(store, key)
    found = discovery.select(discovery.discover(queries.aggregates(store, key), discovery.run_minimums(config),
                                                exports.ci_level(config), run_view(store, key).returns_degraded),
                             reconstructors=keep)
    assert len(ranking) == len(found.ranked)
    assert f"{found.scanned} candidate changes were scanned" in " ".join(m.value for m in at.markdown)


def star_note(at) -> tuple[str, list[str]]:
    """The Fairness page's ★ note under the heat map, and the labels of its page links."""
    note = next(c.value for c in at.caption if c.value.startswith("★ on this map"))
    return note, [link.proto.label for link in at.get("page_link")]


def test_the_fairness_heat_map_says_where_its_familys_stars_are(built_store, mri_store, monkeypatch):
    """Beside the heat map: its own ★ count and its family's, as `discovery.stars` counts them from the store, and a
    link to Weak subgroups exactly when some of the family's ★ lie on other maps (the tiny MRI run's one secondary
    q < 0.05 is an HD95 difference of one sex × age band contrast, not on the sex map)."""
    store, key, cache = built_store
    at = run_page("pages/fairness.py", str(store.path), monkeypatch, str(cache))
    gap = at.radio(key=scoped("fair_gap", key)).value  # the run's headline test comes first
    at.selectbox(key=scoped("fair_label", key)).set_value("nodule").run()  # tiny run: its tests are on nodules
    agg = queries.aggregates(store, key)
    grid = agg[(agg.metric == gap) & (agg.label == "nodule") & (agg.attribute == "sex") & (agg.grp == "F − M")]
    stars = discovery.stars(agg, grid)
    note, links = star_note(at)
    assert note == stars.text() and ("Open Weak subgroups" in links) == stars.elsewhere
    store, key, cache = mri_store
    at = run_page("pages/fairness.py", str(store.path), monkeypatch, str(cache))
    at.radio(key=scoped("fair_gap", key)).set_value("hd95_diff_added").run()
    agg = queries.aggregates(store, key)
    grid = agg[(agg.metric == "hd95_diff_added") & (agg.attribute == "sex") & (agg.grp == "F − M")]
    stars = discovery.stars(agg, grid)
    assert stars.elsewhere and stars.on_map == 0 and stars.in_family >= 1  # the case the link is for
    note, links = star_note(at)
    assert note == stars.text() and f"In the whole secondary family {stars.in_family} of {stars.tests} tests" in note
    assert "Open Weak subgroups" in links
