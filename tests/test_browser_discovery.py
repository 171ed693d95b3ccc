"""In Chromium: the Weak subgroups page's ranking is sorted by its stated statistic, as read from the table on screen
and from its CSV download, and the selection effect is said beside it."""

from __future__ import annotations

import csv

from recon_core import discovery
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
    page.get_by_text(f"Ranked by the {discovery.STATISTIC}, largest first").wait_for(timeout=60_000)
    settled(page)
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text=discovery.STATISTIC)
    table.scroll_into_view_if_needed()
    table.locator('td[role="gridcell"]').first.wait_for(state="attached", timeout=30_000)
    shown = [float(v) for v in column(table, discovery.STATISTIC)]
    ranks = [int(v) for v in column(table, "rank")]
    assert len(shown) >= 5 and ranks == list(range(1, len(ranks) + 1))
    assert shown == sorted(shown, reverse=True)  # as stated: largest first
    store, key, _ = built_store
    found = discovery.discover(queries.aggregates(store, key), discovery.run_minimums(queries.run_config(store, key)))
    assert shown == [round(v, 3) for v in found.ranked.statistic[:len(shown)]]  # the store's numbers, in order
    effect = page.locator(".st-key-selection-effect")
    text = " ".join(effect.inner_text().split())
    assert f"{found.scanned} candidate changes were scanned" in text
    assert "biased upward (the winner's curse)" in text and "confirm it there" in text
    settled(page)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download the ranking (CSV)").click()
    with open(download.value.path(), newline="") as handle:
        rows = list(csv.DictReader(handle))
    statistic = [float(r["statistic"]) for r in rows]
    assert len(rows) == len(found.ranked) and statistic == sorted(statistic, reverse=True)  # the whole list
    page.screenshot(path=str(OUT / "discovery.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
