"""In Chromium: the Weak subgroups page's ranking is sorted by its stated statistic, as read from the table on screen
and from its CSV download (built on click), holds no road that returns the degraded image (that one is named apart
as a reference), and the selection effect is said beside it."""

from __future__ import annotations

import csv

from recon_core import discovery, exports
from recon_core.results import run_view
from recon_core.store import queries
from tests.browser_support import BROWSER, OUT, settled

pytestmark = BROWSER


def column(table, header: str) -> list[str]:
    """The cells of one column of a Streamlit table as shown (its rows on screen), read from the grid's
    accessibility table (in the page, not painted: the grid draws on a canvas)."""
    head = table.get_by_role("columnheader", name=header, exact=True, include_hidden=True)
    index = head.get_attribute("aria-colindex")
    return table.locator(f'td[role="gridcell"][aria-colindex="{index}"]').all_text_contents()


def test_the_discovery_list_is_sorted_by_its_stated_statistic(server, page, built_store):
    page.goto(f"{server}/discovery")
    page.get_by_text(f"Widenings ranked by the {discovery.STATISTIC}, largest first").wait_for(timeout=60_000)
    settled(page)
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text=discovery.STATISTIC)
    table.scroll_into_view_if_needed()
    table.locator('td[role="gridcell"]').first.wait_for(state="attached", timeout=30_000)
    shown = [float(v) for v in column(table, discovery.STATISTIC)]
    ranks = [int(v) for v in column(table, "rank")]
    assert len(shown) >= 5 and ranks == list(range(1, len(ranks) + 1))
    assert shown == sorted(shown, reverse=True)  # as stated: largest first
    store, key, _ = built_store
    config, reference = queries.run_config(store, key), run_view(store, key).returns_degraded
    found = discovery.discover(queries.aggregates(store, key), discovery.run_minimums(config),
                               exports.ci_level(config), reference)
    assert shown == [round(v, 3) for v in found.ranked.statistic[:len(shown)]]  # the store's numbers, in order
    assert reference and not set(column(table, "reconstructor")) & set(reference)  # the tiny X-ray run has `none`
    assert page.get_by_text(f"Reference, not ranked: {reference[0]} (the degraded image)").count() == 1
    effect = page.locator(".st-key-selection-effect")
    text = " ".join(effect.inner_text().split())
    assert f"{found.scanned} candidate changes were scanned" in text
    assert "overstated (biased away from 0; the winner's curse)" in text and "confirm it there" in text
    assert discovery.interval_words(exports.ci_level(config)) in text
    settled(page)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download the ranking (CSV)").click()
    with open(download.value.path(), newline="") as handle:
        rows = list(csv.DictReader(handle))
    statistic = [float(r["statistic"]) for r in rows]
    assert len(rows) == len(found.ranked) and statistic == sorted(statistic, reverse=True)  # the whole list
    assert list(rows[0]) == discovery.EXPORTED and not {r["reconstructor"] for r in rows} & set(reference)
    page.screenshot(path=str(OUT / "discovery.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
