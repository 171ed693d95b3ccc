"""Slide-ready figures: what an exported chart carries (title, units, interval note, run), the figure for slides,
and one colour per reconstructor on every builder's output for the tiny run (issue 18)."""

from __future__ import annotations

import json
from itertools import pairwise

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from recon_core import exports, plots, results
from recon_core.report import report_figures, slides_inputs
from recon_core.store import CLEAN, queries
from tests.conftest import ROOT

APP = str(ROOT / "app.py")


def colour_of(trace) -> str | None:
    """The colour a trace is drawn in: its markers', else its line's (bars: their markers')."""
    marker, line = trace.marker if "marker" in trace else None, trace.line if "line" in trace else None
    return (marker.color if marker is not None else None) or (line.color if line is not None else None)


def tiny_figures(store, key: str) -> tuple[results.RunView, list]:
    """Every builder that draws reconstructors, on the tiny run's stored aggregates at its worst level."""
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    levels = sorted(set(agg.level) - {0.0})
    level = run.worst_level(levels)
    chosen = list(run.reconstructors)
    inputs = slides_inputs(agg, run, chosen, levels, "sex", level, 0.95)
    at_level = pd.concat([agg[agg.reconstructor == CLEAN], agg[agg.reconstructor.isin(chosen) & (agg.level == level)]])
    forest = results.by_group(at_level, run.group_metrics[0].metric, run.group_metrics[0].label, "sex")
    psnr = results.overall(agg[agg.level == level], "psnr")[["reconstructor", "level", "estimate"]].rename(
        columns={"estimate": "x"})
    task = results.overall(agg[agg.level == level], run.tasks[0].metric, run.tasks[0].label)
    cells = psnr.merge(task.rename(columns={"estimate": "y", "ci_low": "y_low", "ci_high": "y_high"}),
                       on=["reconstructor", "level"])
    figures = [*(f for _, f in report_figures(agg, run, chosen, levels)), plots.slides_figure(**inputs),
               plots.gap_bars(inputs["gaps"], "gaps", colours=run.colours),
               plots.group_forest(forest, "forest", "TPR", colours=run.colours),
               plots.quality_vs_task(cells, "PSNR", "AUROC", "cells", colours=run.colours)]
    return run, figures


def test_every_builder_draws_a_reconstructor_in_its_one_colour(built_store):
    """Walks the builders' traces for the tiny run: each named reconstructor (and the clean road) is drawn in
    `run.colours[name]` on every chart, the gap bars included (they were coloured by metric before)."""
    store, key, _ = built_store
    run, figures = tiny_figures(store, key)
    seen: dict[str, set[str]] = {}
    for figure in figures:
        for trace in figure.data:
            if trace.name in run.colours and colour_of(trace) is not None:
                seen.setdefault(trace.name, set()).add(colour_of(trace))
    assert set(seen) == {CLEAN, *run.reconstructors}  # every reconstructor and the clean road appear
    assert seen == {name: {run.colours[name]} for name in seen}
    gap_bars = figures[-3]
    assert {t.name for t in gap_bars.data} >= set(run.reconstructors)  # bars per reconstructor, not per metric


def test_the_slides_figure_has_three_panels_its_texts_and_a_16_9_export(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    inputs = slides_inputs(agg, run, list(run.reconstructors), [3000.0, 300.0], "sex", 300.0, 0.9)
    figure = json.loads(plots.slides_figure(**inputs).to_json())
    layout = figure["layout"]
    domains = [layout[axis]["domain"] for axis in ("xaxis", "xaxis2", "xaxis3")]
    assert all(a[1] < b[0] for a, b in pairwise(domains))  # side by side, not overlapping
    panels = {trace.get("xaxis", "x") for trace in figure["data"]}
    assert panels == {"x", "x2", "x3"}  # every panel draws something
    assert [t["type"] for t in figure["data"] if t.get("xaxis") == "x3"] == ["bar"] * (1 + len(run.reconstructors))
    titles = [a["text"] for a in layout["annotations"]]
    assert {"Image quality: PSNR", "Task: mean AUROC", "Gaps by sex at 300 photons/pixel"} <= set(titles)
    assert "PSNR (dB)" in layout["yaxis"]["title"]["text"] and layout["xaxis"]["title"]["text"].startswith("dose (")
    title = layout["title"]["text"]
    assert f"run {run.name} · {key[:8]}" in title and "90 % bootstrap CI over test images" in title
    assert "X-ray" in title
    width, height, scale = plots.SLIDES_SIZE
    assert (round(width * scale), round(height * scale)) == (1920, 1080) and layout["height"] == height
    names = [t["name"] for t in figure["data"] if t.get("showlegend") is not False and t.get("name")]
    assert sorted(names) == sorted({CLEAN, *run.reconstructors})  # one legend entry per road


def test_a_captioned_copy_carries_the_note_and_leaves_the_cached_figure_alone():
    rows = pd.DataFrame({"reconstructor": ["tv", "tv"], "level": [100.0, 1000.0], "estimate": [20.0, 30.0],
                         "ci_low": [19.0, 29.0], "ci_high": [21.0, 31.0]})
    figure = plots.metric_vs_level(rows, "psnr", "Image quality: PSNR", "PSNR (dB)", "dose (photons/pixel)")
    before = figure.to_json()
    shown = plots.captioned(figure, "bands: 95 % bootstrap CI over test images · run demo · 0123abcd")
    assert figure.to_json() == before  # the original (a cached, shared figure) is untouched
    assert shown.layout.title.text == ("Image quality: PSNR<br><sup>bands: 95 % bootstrap CI over test images · "
                                       "run demo · 0123abcd</sup>")
    assert shown.layout.margin.t > figure.layout.margin.t  # room for the second line
    untitled = plots.captioned(plots.image_grid([("clean", [[0.0]], "image")], 1), "run demo · 0123abcd",
                               "Example images")
    assert untitled.layout.title.text.startswith("Example images<br>")


def test_the_note_says_the_runs_interval_level_and_how_intervals_are_drawn(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    assert exports.ci_level(queries.run_config(store, key)) == pytest.approx(0.95)
    assert exports.ci_level({"evaluation": {"ci_level": 0.8}}) == 0.8 and exports.ci_level(None) == 0.95
    assert exports.note(run, "gap_bars", 0.8) == f"bars: 80 % bootstrap CI over test images · run {run.name} · " \
                                                 f"{key[:8]}"
    assert exports.note(run, "image_grid", 0.8) == f"run {run.name} · {key[:8]}"  # no intervals drawn: none said
    options = exports.png_options(exports.file_stem(run, "psnr-vs-level"), plots.CHART_SIZE)["toImageButtonOptions"]
    assert options["format"] == "png" and options["filename"] == f"tandem-{key[:8]}-psnr-vs-level"
    assert options["width"] * options["scale"] == 1920 and options["height"] * options["scale"] == 1080
    assert exports.size_text(plots.CHART_SIZE) == exports.size_text(plots.SLIDES_SIZE) == "PNG 1920×1080"


def test_every_overview_chart_exports_a_1920_by_1080_png_with_its_run(built_store, monkeypatch):
    """On the page: each chart's camera saves 1920×1080 under the run's file name; each title says run and CI."""
    store, key, cache = built_store
    monkeypatch.setenv("TANDEM_STORE", str(store.path))
    monkeypatch.setenv("TANDEM_CACHE", str(cache))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/overview.py").run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 7  # two curves, forest, gap bars, gap curve, slides, example images
    run = results.run_view(store, key)
    for chart in charts:
        options = json.loads(chart.proto.config)["toImageButtonOptions"]
        assert (options["width"] * options["scale"], options["height"] * options["scale"]) == (1920, 1080)
        assert options["filename"].startswith(f"tandem-{key[:8]}-")
        title = json.loads(chart.proto.spec)["layout"]["title"]["text"]
        assert f"run {run.name} · {key[:8]}" in title
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    assert sum("95 % bootstrap CI" in t for t in titles) >= 5  # every chart with intervals says so
    assert any(e.label.startswith("Figure for slides (PNG 1920×1080)") for e in at.expander)


def test_a_cached_figures_captioned_copy_is_made_once_and_leaves_it_as_drawn():
    """The page's cached figures hand out their dict form as is: the noted copy must not write into it."""
    from pages.ui.figures import FrozenFigure

    cached = FrozenFigure(plots.gap_bars(pd.DataFrame({"reconstructor": ["tv"], "metric": ["eo_gap"],
                                                       "estimate": [0.1], "ci_low": [0.0], "ci_high": [0.2]}),
                                         "Fairness gaps"))
    drawn = json.dumps(cached.to_dict())
    copy = cached.captioned("run demo · 0123abcd", "Fairness gaps")
    assert copy is cached.captioned("run demo · 0123abcd", "Fairness gaps")  # made once, then reused
    assert json.dumps(cached.to_dict()) == drawn and cached.layout.title.text == "Fairness gaps"
    assert copy.to_dict()["layout"]["title"]["text"] == "Fairness gaps<br><sup>run demo · 0123abcd</sup>"


def test_the_slides_gap_panel_is_at_the_level_in_focus_even_off_the_curves(built_store):
    """The level in focus (300) not among the curves' levels ([3000]): its gaps are still every chosen
    reconstructor's at 300 (the panel held only the clean road's before), and the panel names the attribute in
    words ('sex × age band', not the id 'sex×age_band')."""
    store, key, _ = built_store
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    chosen = list(run.reconstructors)
    inputs = slides_inputs(agg, run, chosen, [3000.0], "sex×age_band", 300.0, 0.95)
    gaps = inputs["gaps"]
    assert set(gaps.reconstructor) == {CLEAN, *chosen}
    assert set(gaps[gaps.reconstructor != CLEAN].level) == {300.0}
    assert set(inputs["quality"].level) == {3000.0}  # the curves stay at the levels asked for
    assert inputs["titles"][2] == "Gaps by sex × age band at 300 photons/pixel"


def test_the_reports_charts_come_with_the_builder_that_drew_them(built_store):
    """Each report chart is paired with its builder, so its note says how its intervals are drawn
    (bands for a curve, none for a grid) however many grids there are."""
    store, key, _ = built_store
    run = results.run_view(store, key)
    drawn = report_figures(queries.aggregates(store, key), run, list(run.reconstructors), [3000.0, 300.0])
    kinds = {"metric_vs_level": "scatter", "added_heatmap": "heatmap"}
    assert [kinds[builder] for builder, _ in drawn] == [figure.data[0].type for _, figure in drawn]
    assert [b for b, _ in drawn][:len(run.curves)] == ["metric_vs_level"] * len(run.curves)
