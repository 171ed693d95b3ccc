"""The lab-meeting report: one self-contained HTML page of a selection."""

from __future__ import annotations

import re

from recon_core.report import build_report


def test_report_is_self_contained_and_complete(built_store):
    store, key, _ = built_store
    page = build_report(store, key, ["none", "unet"], [3000.0, 300.0], "sex", 300.0)
    assert page.startswith("<!doctype html>") and page.count("plotly-graph-div") >= 3
    assert page.count("data:image/png;base64,") >= 3  # clean, degraded, reconstructions of each example
    assert "eo_gap_added" in page and "Does image quality predict the task?" in page
    # nothing is fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?://""", page)
