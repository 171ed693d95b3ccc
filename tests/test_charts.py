"""Charts draw the truth: what each page and the report draw, read back from the figures and checked against the store.

Forest-plot points sit at their stored estimates, error maps start at black with a colour bar,
a reconstructor keeps one colour on every chart, the MRI report has a Dice curve with the most
accelerated level on the right, and switching modality never leaves a picker of the other one.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from pages.ui.sidebar import scoped
from recon_core import plots, results
from recon_core.report import build_report, report_figures
from recon_core.store import CLEAN, queries
from tests.conftest import ROOT

APP = str(ROOT / "app.py")
XRAY, MRI = "xray", "mri"
PLACEHOLDER = re.compile(r"#0000(0[1-9]|[1-3]\d|40)\b", re.I)
"""Streamlit's chart theme replaces these colours with its own palette (Inferno's first colour is one of them)."""


def values(v) -> np.ndarray:
    """A figure array as plotly serialises it: a list, or base64 'bdata' of a typed array."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def figures(at: AppTest) -> list[dict]:
    """Every plotly figure a page drew, as the browser receives it."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def start(store_path: str, cache: str, monkeypatch, page: str) -> AppTest:
    """A fresh AppTest session on `page` of the dashboard over a store and cache folder."""
    monkeypatch.setenv("TANDEM_STORE", store_path)
    monkeypatch.setenv("TANDEM_CACHE", cache)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def title(fig: dict) -> str:
    """A figure's title text ('' for an untitled image grid)."""
    return fig["layout"].get("title", {}).get("text", "")


def trace_colour(trace: dict) -> str | None:
    """The colour a trace is drawn in (its markers', else its line's)."""
    return (trace.get("marker") or {}).get("color") or (trace.get("line") or {}).get("color")


def assert_one_colour_each(figs: list[dict], names: set[str]) -> None:
    """Every trace named after a reconstructor (or the clean road) has that name's one colour in all figures."""
    seen: dict[str, set] = {}
    for fig in figs:
        for trace in fig["data"]:
            if trace.get("name") in names and trace_colour(trace) is not None:
                seen.setdefault(trace["name"], set()).add(trace_colour(trace))
    assert seen, "no reconstructor traces found"
    assert all(len(c) == 1 for c in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == len(seen), seen  # and no two share one


def forest_points(fig: dict) -> list[tuple[str, str, float]]:
    """(reconstructor, group, drawn x) of every point of a forest plot (groups are the y tick labels)."""
    ticks = dict(zip(fig["layout"]["yaxis"]["tickvals"], fig["layout"]["yaxis"]["ticktext"], strict=True))
    points = []
    for trace in fig["data"]:
        for x, y in zip(values(trace["x"]), values(trace["y"]), strict=True):
            points.append((trace["name"], ticks[round(float(y))], float(x)))
    return points


def test_forest_points_sit_at_their_stored_values_and_dodge_only_vertically():
    rows = pd.DataFrame({"reconstructor": ["clean", "clean", "tv", "tv", "unet", "unet"],
                         "grp": ["F", "M"] * 3, "estimate": [1.0, 1.0, 1.0, 0.5, 1.0, 0.25],
                         "ci_low": [0.9, 0.8, 0.9, 0.4, 0.8, 0.1], "ci_high": [1.0] * 6, "n": [10] * 6})
    fig = json.loads(plots.group_forest(rows, "", "TPR", plots.reconstructor_colours(["tv", "unet"])).to_json())
    drawn = {(r, g): x for r, g, x in forest_points(fig)}
    assert drawn == {(r, g): e for r, g, e in zip(rows.reconstructor, rows.grp, rows.estimate, strict=True)}
    ys = [values(t["y"]) for t in fig["data"]]
    assert len({tuple(y) for y in ys}) == 3  # three reconstructors, three distinct rows within each group
    # plotly's own grouping shifts points along x when drawn: it must not be asked for
    assert fig["layout"].get("scattermode") != "group" and all("offsetgroup" not in t for t in fig["data"])


def test_overview_forests_errors_and_colours_read_back_from_the_store(built_store, monkeypatch):
    store, key, cache = built_store
    at = start(str(store.path), str(cache), monkeypatch, "pages/overview.py")
    at.select_slider(key=scoped("level", key)).set_value(300.0).run()
    figs = figures(at)
    agg = queries.aggregates(store, key)
    forests = [f for f in figs if "by sex" in title(f) and "ticktext" in f["layout"]["yaxis"]]
    assert forests
    for fig in forests:
        for recon, group, x in forest_points(fig):
            level = 0.0 if recon == CLEAN else 300.0
            stored = agg[(agg.metric == "tpr") & (agg.label == "mean") & (agg.attribute == "sex")
                         & (agg.grp == group) & (agg.reconstructor == recon) & (agg.level == level)].estimate
            assert x == pytest.approx(float(stored.iloc[0]), abs=1e-12), (recon, group)
    run = results.run_view(store, key)
    assert_one_colour_each(figs, {CLEAN, *run.reconstructors})
    assert_error_maps_start_black(figs)


def decoded(source: str) -> PILImage.Image:
    """A panel's PNG as the browser gets it."""
    return PILImage.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))


def assert_error_maps_start_black(figs: list[dict]) -> None:
    """Each error map's colours start at black, a colour bar says so, and no colour is a Streamlit placeholder."""
    errors = [t for f in figs for t in f["data"] if t.get("type") == "image" and t["name"].endswith(" − clean|")]
    assert errors, "no error maps drawn"
    for trace in errors:
        png = decoded(trace["source"])
        assert png.mode == "P" and tuple(png.getpalette()[:3]) == (0, 0, 0)  # zero error is black
    bars = [t["marker"] for f in figs for t in f["data"] if (t.get("marker") or {}).get("showscale")]
    error_bars = [m for m in bars if m["colorbar"]["title"]["text"] == "|error|"]
    assert error_bars and all(m["colorscale"][0] == [0.0, "#000000"] and m["cmin"] == 0 for m in error_bars)
    for fig in figs:
        assert not PLACEHOLDER.search(json.dumps(fig["data"])), "a colour Streamlit's theme would replace"


def test_error_panels_are_painted_from_black_to_the_scale_top():
    png = decoded(plots.panel_png(np.array([[0.0, plots.ERROR_MAX], [2.0, -1.0]]), "error")).convert("RGB")
    pixels = np.asarray(png)
    assert tuple(pixels[0, 0]) == (0, 0, 0) and tuple(pixels[1, 1]) == (0, 0, 0)  # zero (and below) is black
    assert tuple(pixels[0, 1]) == tuple(pixels[1, 0]) == (252, 255, 164)  # the top and above: Inferno's last colour


def test_compare_and_failure_pages_error_maps_and_colours(built_store, monkeypatch):
    store, key, cache = built_store
    at = start(str(store.path), str(cache), monkeypatch, "pages/compare.py")
    assert_error_maps_start_black(figures(at))
    at.radio(key="cmp_mode").set_value("one reconstructor across levels").run()
    at.multiselect(key=scoped("cmp_levels", key)).set_value([300.0, 3000.0]).run()  # clicked worst first
    spec = figures(at)[0]
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles.index("degraded (3000)") < titles.index("degraded (300)")  # mildest first, one row each
    assert at.dataframe[0].value.road.tolist()[1:] == [f"{at.selectbox(key=scoped('cmp_recon', key)).value} at {lv}"
                                                       for lv in (3000, 300)]
    at.switch_page("pages/fairness.py").run()
    run = results.run_view(store, key)
    assert_one_colour_each(figures(at), {CLEAN, *run.reconstructors})
    at.switch_page("pages/failures.py").run()
    at.toggle(key="fail_only").set_value(False).run()
    assert_error_maps_start_black(figures(at))


def test_a_failure_case_is_picked_by_id_and_survives_a_filter(built_store, monkeypatch):
    store, key, cache = built_store
    at = start(str(store.path), str(cache), monkeypatch, "pages/failures.py")
    at.toggle(key="fail_only").set_value(False).run()
    at.selectbox(key=scoped("fail_case", key)).select_index(3).run()
    chosen = at.selectbox(key=scoped("fail_case", key)).value
    group = chosen.split(" · ")[0]
    sex = queries.image_rows(store, key, CLEAN, 0.0).set_index("image_id").sex[group]
    at.selectbox(key=scoped("fail_group", key)).set_value(str(sex)).run()  # the chosen case is still listed
    assert at.selectbox(key=scoped("fail_case", key)).value == chosen
    other = "F" if str(sex) == "M" else "M"
    at.selectbox(key=scoped("fail_group", key)).set_value(other).run()  # now it is not: no stale label
    assert not at.exception
    picker = at.selectbox(key=scoped("fail_case", key))
    assert picker.value != chosen and picker.index is not None and chosen.split(" · ")[0] not in picker.options[0]


def run_picker(at):
    """The sidebar's 'Study run' selectbox (its key changes with the runs it offers)."""
    return next(box for box in at.selectbox if box.label == "Study run")


def test_the_run_picker_never_shows_a_stale_run_label(both_modalities, monkeypatch, tmp_path):
    store, xray, mri, cache = both_modalities
    path = tmp_path / "live.duckdb"
    shutil.copy(store.path, path)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE runs SET status = 'running' WHERE config_hash = ?", [mri])
    at = start(str(path), str(cache), monkeypatch, "pages/overview.py")
    at.selectbox(key="modality").set_value(MRI).run()
    picker = run_picker(at)
    assert picker.value == mri and picker.options == [f"tiny-mri · {mri[:8]}"]  # no status in the label
    assert any(c.value.startswith("MRI (accelerated) · running") for c in at.sidebar.caption)
    first_key = picker.key
    with duckdb.connect(str(path)) as con:  # the build finishes and another MRI run starts, newest first
        con.execute("UPDATE runs SET status = 'done' WHERE config_hash = ?", [mri])
        con.execute("INSERT INTO runs SELECT * REPLACE ('f' || config_hash[2:] AS config_hash, 'tiny-mri-2' AS name, "
                    "'running' AS status, created_at + INTERVAL 1 HOUR AS created_at) FROM runs WHERE config_hash = ?",
                    [mri])
    at.run()
    picker = run_picker(at)
    assert picker.key != first_key  # other runs offered: a fresh box, so the old label cannot stay on screen
    assert picker.value == mri and picker.options[0].startswith("tiny-mri-2 · ")  # the choice held, not index 0
    assert any(c.value.startswith("MRI (accelerated) · done") for c in at.sidebar.caption)
    at.selectbox(key="modality").set_value(XRAY).run()
    picker = run_picker(at)
    assert picker.value == xray and picker.options == [f"tiny-xray · {xray[:8]}"]
    assert any(c.value.startswith("X-ray (low-dose) · done") for c in at.sidebar.caption)
    at.selectbox(key="modality").set_value(MRI).run()
    assert run_picker(at).value == mri and not at.exception


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/compare.py", "pages/failures.py"])
def test_switching_modality_never_shows_a_label_of_the_other(both_modalities, monkeypatch, page):
    store, xray, mri, cache = both_modalities
    at = start(str(store.path), str(cache), monkeypatch, page)
    at.selectbox(key="modality").set_value(XRAY).run()
    assert run_picker(at).value == xray
    xray_ids = set(queries.image_rows(store, xray, CLEAN, 0.0).image_id)
    mri_ids = set(queries.image_rows(store, mri, CLEAN, 0.0).image_id)
    for modality, key, ids, other in ((MRI, mri, mri_ids, xray_ids), (XRAY, xray, xray_ids, mri_ids)):
        at.selectbox(key="modality").set_value(modality).run()
        assert not at.exception, at.exception
        assert run_picker(at).value == key
        levels = set(queries.cells(store, key).level)
        assert at.select_slider(key=scoped("level", key)).value in levels
        shown = [w.value for w in at.selectbox if isinstance(w.value, str)]
        assert not any(value in other or value.split(" · ")[0] in other for value in shown), shown
        assert any(value in ids or value.split(" · ")[0] in ids for value in shown), shown


def test_a_fresh_session_opens_on_the_newest_finished_run(both_modalities, monkeypatch):
    store, _, _, cache = both_modalities
    runs = queries.runs(store)
    newest = runs[runs.status == "done"].iloc[0]
    at = start(str(store.path), str(cache), monkeypatch, "pages/overview.py")
    assert at.selectbox(key="modality").value == newest.modality
    with duckdb.connect(str(store.path)) as con:  # the newest run is now half-built: the other opens first
        con.execute("UPDATE runs SET status = 'running' WHERE config_hash = ?", [newest.config_hash])
    try:
        at = start(str(store.path), str(cache), monkeypatch, "pages/overview.py")
        assert at.selectbox(key="modality").value != newest.modality
    finally:
        with duckdb.connect(str(store.path)) as con:
            con.execute("UPDATE runs SET status = 'done' WHERE config_hash = ?", [newest.config_hash])


def test_mri_report_has_a_dice_curve_with_the_most_accelerated_level_on_the_right(mri_store):
    store, key, _ = mri_store
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    drawn = report_figures(agg, run, list(run.reconstructors), [4.0, 8.0])
    figs = [json.loads(f.to_json()) for _, f in drawn]
    kinds = {"metric_vs_level": "scatter", "added_heatmap": "heatmap"}
    assert [kinds[b] for b, _ in drawn] == [f["data"][0]["type"] for f in figs]  # named by its builder
    dice = next(f for f in figs if "Dice" in title(f) and f["data"][0]["type"] == "scatter")
    assert dice["layout"]["xaxis"]["autorange"] is True  # acceleration: higher is worse, so ascending to the right
    assert "more degraded to the right" in dice["layout"]["xaxis"]["title"]["text"]
    heat = figs[-1]
    assert heat["data"][0]["type"] == "heatmap" and list(heat["data"][0]["x"]) == ["4", "8"]
    assert np.abs(values(heat["data"][0]["z"]).astype(float)).max() > 0  # the Dice gap, not an all-zero TPR gap
    assert_one_colour_each(figs, {CLEAN, *run.reconstructors})
    html = build_report(store, key, list(run.reconstructors), [4.0, 8.0])
    tables = html[html.index("<h2>Per cell"):html.index("<h2>Example images")]
    scripts = re.sub(r"<script.*?</script>", "", tables, flags=re.S)  # figures' data aside: the tables as read
    assert "Task: tumour Dice" in html and not re.search(r"\bnan\b", scripts, flags=re.I)


def test_xray_report_and_pages_give_a_reconstructor_the_same_colour(built_store):
    store, key, _ = built_store
    run = results.run_view(store, key)
    figs = [json.loads(f.to_json()) for _, f in
            report_figures(queries.aggregates(store, key), run, list(run.reconstructors), [300.0, 3000.0])]
    colours = run.colours
    for fig in figs:
        for trace in fig["data"]:
            if trace.get("name") in colours and trace_colour(trace):
                assert trace_colour(trace) == colours[trace["name"]]
        assert fig["layout"]["margin"]["l"] >= 60 and fig["layout"]["yaxis"].get("automargin") is True


def test_a_collapsed_rate_is_flagged_not_read_as_fairer():
    """Where the threshold calls everyone (FPR 1 in every group) a falling equalized-odds gap is marked ⚠."""
    rows = []
    for recon, fpr in (("tv", (1.0, 1.0)), ("unet", (0.2, 0.4))):
        for grp, value in zip(("F", "M"), fpr, strict=True):
            rows.append({"reconstructor": recon, "level": 300.0, "metric": "fpr", "label": "mean", "attribute": "sex",
                         "grp": grp, "estimate": value})
            rows.append({"reconstructor": recon, "level": 300.0, "metric": "tpr", "label": "mean", "attribute": "sex",
                         "grp": grp, "estimate": 0.7})
    rows += [{"reconstructor": r, "level": 300.0, "metric": "eodd_added", "label": "mean", "attribute": "sex",
              "grp": "", "estimate": e, "ci_low": e - 0.05, "ci_high": e + 0.05, "q_value": 0.5}
             for r, e in (("tv", -0.155), ("unet", 0.02))]
    agg = pd.DataFrame(rows)
    flagged = results.collapsed_cells(agg, "eodd_added", "mean", "sex")
    assert flagged == {("tv", 300.0): "FPR = 1 in every group"}  # says which rate saturated
    heat = plots.added_heatmap(agg[agg.metric == "eodd_added"], "", flagged=flagged)
    text = dict(zip(heat.data[0].y, (row[0] for row in heat.data[0].text), strict=True))
    colour = dict(zip(heat.data[0].y, (row[0] for row in heat.data[0].z), strict=True))
    assert text["tv"].endswith("⚠") and "⚠" not in text["unet"]
    assert np.isnan(colour["tv"]) and colour["unet"] == pytest.approx(0.02)  # never coloured as "narrower"
    added = agg[agg.metric == "eodd_added"].assign(level=300.0)
    assert results.flag_collapsed(added, agg, "sex").tolist() == ["FPR = 1 in every group", ""]
    assert heat.data[0].zmax == pytest.approx(0.205)  # the widest interval bound sets the range, not the estimate


def test_page_scripts_hold_no_bare_strings_streamlit_would_draw():
    """Streamlit's magic writes any bare expression of a page script to the page: only the docstring may be one."""
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]:
        body = ast.parse(path.read_text()).body
        bare = [node.lineno for node in body[1:] if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)]
        assert not bare, f"{path.name}: lines {bare}"


def test_a_calibration_curve_draws_each_group_at_its_values_and_the_calibrated_line():
    """Points sit at the stored (predicted std, RMS error); the dotted line is rmse = std·√(1 + 1/n)."""
    curve = pd.DataFrame({"attribute": ["all", "all", "sex", "sex"], "grp": ["all", "all", "F", "F"],
                          "bin": [3, 4, 3, 4], "predicted_std": [0.01, 0.02, 0.011, 0.019],
                          "rmse": [0.012, 0.03, 0.013, 0.028], "pixels": [900.0, 100.0, 500.0, 50.0],
                          "images": [10, 10, 6, 6]})
    fig = plots.calibration_plot(curve, 4, "t")
    everyone, female, line = fig.data
    assert everyone.name == "everyone" and female.name == "F" and line.name == "calibrated (4 samples)"
    assert list(everyone.x) == [0.01, 0.02] and list(female.y) == [0.013, 0.028]
    assert np.allclose(np.asarray(line.y) / np.asarray(line.x), np.sqrt(1.25))
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"


def test_posterior_tables_keep_human_names_and_a_draw_table_names_the_flipped_calls():
    rows = [{"reconstructor": "diffusion", "level": lv, "metric": m, "label": "", "attribute": a, "grp": g,
             "estimate": e, "ci_low": e - 0.01, "ci_high": e + 0.01, "n": 10}
            for lv in (300.0, 3000.0) for m, e in (("spread_error_rho", 0.4), ("interval_coverage", 0.9),
                                                  ("posterior_std", 0.00025), ("sample_flip", 0.1))
            for a, g in (("all", "all"), ("sex", "F"), ("sex", "M"))]
    agg = pd.DataFrame(rows)
    assert results.samplers(agg) == ["diffusion"]
    table = results.posterior_overview(agg, "all", ["diffusion"], [3000.0, 300.0])
    assert table.level.tolist() == ["3000", "300"]  # in the order asked: mildest first
    assert list(table.columns) == ["reconstructor", "level", "Spread–error rank correlation",
                                   "95 % interval coverage", "Posterior spread", "Sample flip rate", "n"]
    assert table["Posterior spread"].iloc[0] == "0.00025 [-0.00975, 0.0103]"  # small values: 3 significant digits
    assert results.posterior_overview(agg, "sex").group.tolist() == ["F", "M", "F", "M"]
    drawn = pd.DataFrame({"draw": [0, 0, 1, 1], "name": ["a", "b", "a", "b"], "value": [0.6, 0.2, 0.4, 0.2]})
    draws = results.draw_table(drawn, {"a": 0.55, "b": 0.3}, {"a": 0.5, "b": 0.25})
    assert draws.road.tolist() == ["reported", "sample 1", "sample 2"]
    assert draws["calls that differ from the reported"].tolist() == ["", "b", "a, b"]
    ranked = results.uncertain_cases(pd.DataFrame({"image_id": ["x", "y", "z"], "sample_flip": [0.0, 0.5, 0.5],
                                                   "posterior_std": [0.1, 0.1, 0.2]}), "sample_flip")
    assert ranked.image_id.tolist() == ["z", "y", "x"]
