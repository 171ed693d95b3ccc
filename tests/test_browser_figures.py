"""Slide-ready figures in Chromium (issue 18): a chart's camera button downloads a PNG of the size the page states,
the figure for slides too, and the HTML report's charts keep their tick labels inside the figure at 1440×900,
clear of the axis titles.

The PNG's size is read from its IHDR chunk (bytes 16–24: width and height, big-endian).
"""

from __future__ import annotations

import struct
from pathlib import Path

from recon_core import plots, results
from recon_core.report import build_report
from recon_core.store import queries
from tests.browser_support import BROWSER, OUT, settled

pytestmark = BROWSER
CAMERA = '.modebar-btn[data-title^="Download plot as a"]'


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, from its signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", head[16:24])


def camera_download(page, chart) -> tuple[Path, str]:
    """Hovers `chart` so its modebar shows, clicks the camera and returns the downloaded file and its name."""
    chart.scroll_into_view_if_needed()
    chart.hover()
    with page.expect_download(timeout=60_000) as download:
        chart.locator(CAMERA).click()
    return download.value.path(), download.value.suggested_filename


def test_a_charts_png_export_has_the_stated_size(server, page, built_store):
    _, key, _ = built_store
    page.goto(f"{server}/overview")
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for(timeout=60_000)
    settled(page)
    stated = page.get_by_text("camera icon saves a PNG 1920×1080").first
    assert stated.is_visible()
    path, name = camera_download(page, chart)
    assert name == f"tandem-{key[:8]}-psnr-vs-level.png"
    assert png_size(path) == (1920, 1080)


def test_the_slides_figure_exports_at_1920_by_1080(server, page, built_store):
    _, key, _ = built_store
    page.goto(f"{server}/overview")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    settled(page)
    expander = page.get_by_text("Figure for slides (PNG 1920×1080)")
    expander.scroll_into_view_if_needed()
    expander.click()
    figure = page.locator('[data-testid="stExpander"]').filter(has_text="Figure for slides").locator(
        ".js-plotly-plot")
    figure.wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the expander's chart lays itself out at its width
    path, name = camera_download(page, figure)
    assert name == f"tandem-{key[:8]}-slides.png"
    assert png_size(path) == (1920, 1080)
    (OUT / "slides-figure.png").write_bytes(path.read_bytes())


LABELS_IN_PLACE = """() => [...document.querySelectorAll('.js-plotly-plot')].map((plot, i) => {
  const svg = plot.querySelector('svg.main-svg').getBoundingClientRect();
  const boxes = sel => [...plot.querySelectorAll(sel)].map(el => el.getBoundingClientRect())
                                                       .filter(b => b.width > 0 && b.height > 0);
  const ticks = boxes('g[class^="x"][class$="tick"] > text, g[class^="y"][class$="tick"] > text');
  const titles = boxes('text[class^="x"][class$="title"], text[class^="y"][class$="title"]');
  const cut = ticks.filter(b => b.left < svg.left - 0.5 || b.right > svg.right + 0.5 || b.top < svg.top - 0.5
                                || b.bottom > svg.bottom + 0.5).length;
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const apart = list => list.filter((a, k) => list.slice(k + 1).some(b => hit(a, b))).length;
  const collide = ticks.filter(t => titles.some(a => hit(t, a))).length + apart(titles) + apart(ticks);
  return {chart: i, ticks: ticks.length, titles: titles.length, cut, collide};
})"""
"""Per chart: its tick labels outside the figure's svg (cut at an edge), and tick labels or axis titles that overlap
an axis title or one another (every subplot's axes: x2, y3 … included)."""


def labels_in_place(browser, html: str, name: str) -> list[dict]:
    """Opens `html` in Chromium at 1440×900 and measures every chart's tick labels (LABELS_IN_PLACE)."""
    path = OUT / name
    path.write_text(html)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        report = context.new_page()
        report.goto(path.as_uri())
        report.locator(".js-plotly-plot .xtick").first.wait_for(state="attached", timeout=60_000)
        report.wait_for_timeout(500)
        report.screenshot(path=str(path.with_suffix(".png")), full_page=True)
        return report.evaluate(LABELS_IN_PLACE)
    finally:
        context.close()


def test_the_reports_tick_labels_are_uncut_and_clear_of_the_axis_titles(browser, built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    html = build_report(store, key, list(run.reconstructors), [3000.0, 300.0], "sex", 300.0)
    charts = labels_in_place(browser, html, "report-1440.html")
    assert len(charts) >= 4 and all(c["ticks"] and c["titles"] for c in charts)  # the check saw labels and titles
    assert [c for c in charts if c["cut"] or c["collide"]] == []
    # the same check on a chart without the margins and automargin the builders set: it must see the fault
    agg = queries.aggregates(store, key)
    bare = plots.added_heatmap(agg[(agg.metric == "eo_gap_added") & (agg.attribute == "sex")], "no room",
                               level_label=run.level_label)
    bare.update_layout(margin=dict(l=0, r=0, t=30, b=0)).update_xaxes(automargin=False).update_yaxes(automargin=False)
    faulty = labels_in_place(browser, bare.to_html(include_plotlyjs=True), "report-no-margins.html")
    assert faulty[0]["cut"] or faulty[0]["collide"]
