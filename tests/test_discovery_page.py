"""AppTest runs of the Weak subgroups page on the tiny X-ray and MRI stores: the ranking as the module makes it,
sorted by its stated statistic, the selection effect and the size rules in words, the sidebar's choices honoured."""

from __future__ import annotations

import numpy as np
import pytest

from pages.ui.sidebar import scoped
from recon_core import discovery
from recon_core.store import queries
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
    found = discovery.discover(agg, discovery.run_minimums(queries.run_config(store, key)))
    assert len(ranking) == len(found.ranked)  # every reconstructor and level is chosen in a fresh sidebar
    assert ranking["change [95 % CI]"].tolist() == discovery.table(found)["change [95 % CI]"].tolist()
    text = " ".join(m.value for m in at.markdown)
    assert f"{found.scanned} candidate changes were scanned" in text and "winner's curse" in text
    captions = " ".join(c.value for c in at.caption)
    rules = found.minimums
    assert f"at least {rules.group_size} units" in captions and f"at least {rules.positives} positives" in captions
    assert "size rules" in captions
    assert any(b.label == "Download the ranking (CSV)" for b in at.get("download_button"))
    assert assert_tables_speak_plainly(at, metric_ids(store, key), "discovery") >= 1
    attribute = at.selectbox(key=scoped("attribute", key)).value
    at.toggle(key=scoped("disc_one_attribute", key)).set_value(True).run()
    narrowed = next(d.value for d in at.dataframe if discovery.STATISTIC in d.value.columns)
    assert set(narrowed["subgroups by"]) == {discovery.attribute_text(attribute)} and len(narrowed) < len(ranking)


def test_the_page_follows_the_sidebars_reconstructors(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/discovery.py", str(store.path), monkeypatch, str(cache))
    picker = at.multiselect(key=scoped("reconstructors", key))
    keep = picker.value[:1]
    picker.set_value(keep).run()
    ranking = next(d.value for d in at.dataframe if discovery.STATISTIC in d.value.columns)
    assert set(ranking.reconstructor) == set(keep)
    found = discovery.select(discovery.discover(queries.aggregates(store, key), discovery.run_minimums(
        queries.run_config(store, key))), reconstructors=keep)
    assert len(ranking) == len(found.ranked)
    assert f"{found.scanned} candidate changes were scanned" in " ".join(m.value for m in at.markdown)


def test_the_fairness_heat_map_says_where_its_familys_stars_are(built_store, monkeypatch):
    """Beside the heat map: its own ★ count and its family's q < 0.05 count, both as stored."""
    store, key, cache = built_store
    at = run_page("pages/fairness.py", str(store.path), monkeypatch, str(cache))
    run_primary = at.radio(key=scoped("fair_gap", key)).value  # the run's headline test comes first
    at.selectbox(key=scoped("fair_label", key)).set_value("nodule").run()  # tiny run: its tests are on nodules
    agg = queries.aggregates(store, key)
    tested = agg[(agg.family == "primary") & agg.p_value.notna()]
    note = next(c.value for c in at.caption if c.value.startswith("★ on this map"))
    assert run_primary.endswith("_diff_added")
    assert f"In the whole primary family {int((tested.q_value < 0.05).sum())} of {len(tested)} tests" in note
