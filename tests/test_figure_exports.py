"""Slide-ready figures: what an exported chart carries (title, units, interval note, run), the figure for slides,
and one colour per reconstructor on every builder's output for the tiny run (issue 18)."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pages.ui.sidebar import scoped
from recon_core import exports, plots, results, tables
from recon_core.fairness.flips import flip_rates, flip_table
from recon_core.report import build_report, report_figures, slides_inputs
from recon_core.store import CLEAN, Store, queries
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
    assert f"run {run.name} · {key[:8]}" in title and "90 % CI over test images" in title
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
    assert exports.note(run, "gap_bars", 0.8) == f"bars: 80 % CI over test images · run {run.name} · {key[:8]}"
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
    assert sum("95 % CI over" in t for t in titles) >= 5  # every chart with intervals says so
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


PAGES = ("pages/overview.py", "pages/fairness.py", "pages/compare.py", "pages/posterior.py", "pages/mitigation.py",
         "pages/failures.py")


@pytest.fixture
def at_eighty(built_store, tmp_path, monkeypatch):
    """The tiny run copied with `evaluation.ci_level` 0.8 (its stored intervals stay as built): a page that wrote
    '95 %' or computed its own rates at 0.95 would disagree with what the notes say."""
    store, key, cache = built_store
    shutil.copy(store.path, tmp_path / "eighty.duckdb")
    copy = Store(tmp_path / "eighty.duckdb")
    with copy.connect() as con:
        config = json.loads(con.execute("SELECT config_json FROM runs WHERE config_hash = ?", [key]).fetchone()[0])
        config["evaluation"]["ci_level"] = 0.8
        con.execute("UPDATE runs SET config_json = ? WHERE config_hash = ?", [json.dumps(config), key])
    monkeypatch.setenv("TANDEM_STORE", str(copy.path))
    monkeypatch.setenv("TANDEM_CACHE", str(cache))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at, copy, key


def test_every_exported_chart_has_a_real_title_and_the_runs_interval_level(at_eighty):
    """On every page with charts: no exported title is empty or the widget key (the Fairness forest exported as
    'Group metric' before), every interval note says the run's 80 % and no method it may not be, and the Failure
    cases flip rates and the hallucination forests are computed at 80 % and titled so."""
    at, store, key = at_eighty
    titles: dict[str, str] = {}
    for page in PAGES:
        at.switch_page(page).run()
        if page == "pages/failures.py":  # a sampler's case: the uncertain-case grid and the attributions grid too
            at.select_slider(key=scoped("level", key)).set_value(300.0).run()
            at.selectbox(key=scoped("fail_recon", key)).set_value("diffusion").run()
            at.toggle(key="fail_only").set_value(False).run()
        assert not at.exception, (page, at.exception)
        for chart in at.get("plotly_chart"):
            name = json.loads(chart.proto.config)["toImageButtonOptions"]["filename"].removeprefix(
                f"tandem-{key[:8]}-")
            titles[name] = json.loads(chart.proto.spec)["layout"]["title"]["text"]
    assert {"group-metric", "compare-images", "example-images", "uncertain-case", "case-attributions",
            "flip-rates", "mitigation-frontier"} <= set(titles)
    for name, title in titles.items():
        first = title.split("<br>")[0]
        assert first and not first.startswith("<sup>"), (name, title)
        assert first.lower() != name.replace("-", " ").lower(), (name, title)
        assert "bootstrap" not in title and "95 % CI" not in title, (name, title)
    assert "80 % CI over test images" in titles["group-metric"]
    assert "(80 % CI)" in titles["flip-rates"]
    assert any(name.startswith("hallucinations-") and "(80 % CI)" in title for name, title in titles.items())
    at.switch_page("pages/failures.py").run()
    thresholds = queries.thresholds(store, key)
    table = flip_table(queries.image_rows(store, key, CLEAN, 0.0), queries.image_rows(store, key, "diffusion", 300.0),
                       sorted(thresholds), thresholds)
    expected = tables.flip_rate_rows(flip_rates(table, ["sex"], ci_level=0.8, seed=1))
    shown = next(d.value for d in at.dataframe if "what" in d.value.columns)
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), expected)  # the rates at the run's 80 %


def test_the_reports_hallucination_rates_and_interval_texts_follow_the_runs_level(at_eighty):
    """A run at 80 %: the report's hallucination table holds the rates computed at 80 % (not at a fixed 95 %), and
    its sentences name 80 %, not 95 %, for the intervals it shows."""
    _, store, key = at_eighty
    run = results.run_view(store, key)
    page = build_report(store, key, ["tv"], [3000.0, 300.0], "sex", 300.0)
    section = page[page.index("<h2>Hallucination check"):page.index("<h2>Does image quality")]
    at = {ci: results.hallucination_rows(results.hallucination_rates(store, key, "tv", 300.0, ["sex"], ci_level=ci),
                                         "tv", 300.0)["rate [95 % CI]"] for ci in (0.8, 0.95)}
    assert all(text in section for text in at[0.8])
    assert set(at[0.95]) - set(at[0.8]) and not any(text in section for text in set(at[0.95]) - set(at[0.8]))
    assert "Per cell, with 80 % CI" in page and f"Intervals are 80 % CI over {run.unit_text}" in page
