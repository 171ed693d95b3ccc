"""AppTest runs of every page: on an empty store, on the tiny X-ray store the pipeline test built, and on MRI."""

from __future__ import annotations

import json
import re
import shutil
import time

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from pages.ui.sidebar import scoped
from recon_core import findings, results
from recon_core.metrics import catalogue
from recon_core.modalities.mri import MRI
from recon_core.modalities.xray import XRay
from recon_core.store import queries
from tests.conftest import ROOT

APP = str(ROOT / "app.py")


def run_page(page: str | None, store_path: str, monkeypatch, cache_dir: str) -> AppTest:
    monkeypatch.setenv("TANDEM_STORE", store_path)
    monkeypatch.setenv("TANDEM_CACHE", cache_dir)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def test_home_on_empty_store_offers_the_demo(tmp_path, monkeypatch):
    at = run_page(None, str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    assert any("store is empty" in info.value for info in at.info)
    assert any(button.label == "Build the demo study" for button in at.button)


def test_navigation_needs_no_emoji_font_and_home_says_what_tandem_does(tmp_path, monkeypatch):
    sources = [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py"))]
    icons = [icon for path in sources for icon in re.findall(r'icon="([^"]*)"', path.read_text())]
    assert len(icons) >= 8 and all(icon.startswith(":material/") for icon in icons), icons
    at = run_page(None, str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    text = " ".join(m.value for m in at.markdown)
    assert all(word in text for word in ("X-ray", "MRI", "your own", "diffusion", "Uncertainty", "Mitigation"))
    assert "three reconstructors" not in text


def test_overview_on_empty_store_says_so(tmp_path, monkeypatch):
    at = run_page("pages/overview.py", str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    assert any("No results yet" in info.value for info in at.info)


def test_home_lists_the_built_run(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page(None, str(store.path), monkeypatch, str(cache))
    assert len(at.dataframe) == 1
    assert key in at.dataframe[0].value["run key"].tolist()


@pytest.mark.parametrize("attribute", ["sex", "age_band"])
def test_overview_draws_curves_groups_and_examples(built_store, monkeypatch, attribute):
    store, key, cache = built_store
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    charts = at.get("plotly_chart")
    assert len(charts) == 8  # PSNR, AUROC, TPR by group, gaps, EO and EODD gap curves, slides figure, examples
    at.selectbox(key=scoped("attribute", key)).set_value(attribute).run()
    at.select_slider(key=scoped("level", key)).set_value(3000.0).run()
    assert not at.exception
    at.multiselect(key=scoped("reconstructors", key)).set_value(["unet"]).run()
    assert not at.exception
    assert any("Added by reconstruction" in h.value for h in at.subheader)
    assert any(b.label.startswith("Download a report") for b in at.get("download_button"))


def test_overview_opens_with_what_the_study_shows(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    assert at.subheader[0].value == findings.TITLE  # before every chart and table
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    worst = run.worst_level(sorted(set(agg.level) - {0.0}))  # the known-truth check is of the most degraded level
    checks = {r: results.hallucination_rates(store, key, r, worst, ["sex"]) for r in run.reconstructors}
    expected = findings.study_findings(agg, run, checks=checks)
    panel = next(m.value for m in at.markdown if m.value.startswith("- "))
    assert panel.splitlines() == [f"- {f.text}" for f in expected]
    assert {f.kind for f in expected} == {"degradation", "ranking", "added_bias", "hallucination"}
    at.multiselect(key=scoped("reconstructors", key)).set_value(["tv", "unet"]).run()  # the sidebar's selection
    panel = next(m.value for m in at.markdown if m.value.startswith("- "))
    assert panel.startswith("- tv: PSNR") and "gan" not in panel and "diffusion" not in panel


def test_overview_shows_the_diffusion_posterior_spread_beside_the_examples(built_store, monkeypatch):
    store, key, cache = built_store
    examples = queries.examples(store, key, "diffusion", 300.0)
    assert "uncertainty" in set(examples.kind)  # tiny.yaml draws 2 posterior samples per image
    spread = examples[examples.kind == "uncertainty"].pixels.iloc[0]
    assert spread.shape == (32, 32) and spread.max() > 0
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    grid = at.get("plotly_chart")[-1].proto.spec
    assert "diffusion: posterior std" in grid and "gan" in grid


@pytest.mark.parametrize("page", ["pages/compare.py", "pages/failures.py"])
def test_compare_and_failures_on_empty_store_say_so(tmp_path, monkeypatch, page):
    at = run_page(page, str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    assert any("No results yet" in info.value for info in at.info)


def test_run_page_on_empty_store_offers_the_shipped_configs(tmp_path, monkeypatch):
    at = run_page("pages/run.py", str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    shipped = at.selectbox(key="run_config").options
    assert {"demo.yaml", "demo-mri.yaml", "gpu-mri.yaml"} <= set(shipped)


def test_fairness_on_empty_store_says_so(tmp_path, monkeypatch):
    at = run_page("pages/fairness.py", str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    assert any("No results yet" in info.value for info in at.info)


def test_fairness_page_draws_groups_added_bias_and_correlations(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/fairness.py", str(store.path), monkeypatch, str(cache))
    assert len(at.get("plotly_chart")) == 3  # forest, added-bias heat map, PSNR vs AUROC
    buttons = at.get("download_button")
    assert sum(b.label.endswith("(CSV)") for b in buttons) == 3
    assert sum(b.label == "Interactive HTML" for b in buttons) == len(at.get("plotly_chart")) == 3
    assert {"change [95 % CI]", "test"} <= set(at.dataframe[0].value.columns)  # human names, the test in words
    assert "Spearman" in " ".join(at.dataframe[-1].value.columns)
    families = at.dataframe[1].value
    assert list(families.columns) == ["family", "question", "tests", "q < 0.05"]
    assert set(families.family) <= {"primary", "secondary", "inherent", "task"} and "primary" in set(families.family)
    assert at.radio(key=scoped("fair_gap", key)).value == "tpr_diff_added"  # the signed headline test first
    assert at.dataframe[-1].value.scope.iloc[0] == "within levels"
    assert at.dataframe[-1].value.scope.iloc[-1] == "pooled (confounded by level)"
    assert any("It mixes levels" in caption.value for caption in at.caption)
    assert at.selectbox(key=scoped("attribute", key)).value == "sex"
    for attribute in ("age_band", "sex×age_band"):
        at.selectbox(key=scoped("attribute", key)).set_value(attribute).run()
        assert not at.exception
    for metric in ("fnr", "ece", "psnr"):
        at.selectbox(key=scoped("fair_metric", key)).set_value(metric).run()
        assert not at.exception
    at.radio(key=scoped("fair_gap", key)).set_value("eodd_added").run()
    at.selectbox(key=scoped("fair_recon", key)).set_value("tv").run()
    assert not at.exception


def test_failure_cases_page_ranks_flips_and_explains_a_case(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/failures.py", str(store.path), monkeypatch, str(cache))
    at.selectbox(key=scoped("fail_recon", key)).set_value("none").run()
    at.select_slider(key=scoped("level", key)).set_value(300.0).run()
    at.toggle(key="fail_only").set_value(False).run()  # every case, so one is always there to explain
    assert not at.exception
    rates = at.dataframe[0].value
    assert set(rates.what) == {"finding lost (new false negative)", "finding invented (new false positive)"}
    assert set(rates.group) == {"everyone", "F", "M"}
    assert len(at.get("plotly_chart")) == 2  # flip rates by group, the case's images and attributions
    at.radio(key=scoped("fail_method", "classifier")).set_value("grad_cam").run()
    at.selectbox(key=scoped("attribute", key)).set_value("age_band").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    assert set(at.dataframe[0].value.group) == {"everyone", "<60", "60+"}


def test_failure_cases_page_without_checkpoints_explains_why(built_store, monkeypatch, tmp_path):
    store, _, _ = built_store
    at = run_page("pages/failures.py", str(store.path), monkeypatch, str(tmp_path))  # empty cache: no weights
    at.toggle(key="fail_only").set_value(False).run()
    assert not at.exception
    assert any("cannot be replayed here" in w.value for w in at.warning)


def test_compare_page_replays_reconstructors_side_by_side(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/compare.py", str(store.path), monkeypatch, str(cache))
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert table.road.tolist() == ["clean", "none", "tv", "unet", "gan", "diffusion", "unet+reweight", "unet+eodd",
                                     "unet+adversarial"]  # the run's order
    assert table["PSNR (dB)"].iloc[1:].notna().all()
    at.select_slider(key=scoped("level", key)).set_value(3000.0).run()
    at.multiselect(key=scoped("reconstructors", key)).set_value(["unet"]).run()
    assert not at.exception and at.dataframe[0].value.road.tolist() == ["clean", "unet"]
    at.radio(key="cmp_mode").set_value("one reconstructor across levels").run()
    assert not at.exception
    assert at.dataframe[0].value.road.tolist() == ["clean", "unet at 3000", "unet at 300"]
    spec = at.get("plotly_chart")[0].proto.spec
    assert "degraded (3000)" in spec and "degraded (300)" in spec  # each level's own degraded image
    at.multiselect(key=scoped("cmp_levels", key)).set_value([300.0]).run()
    assert at.dataframe[0].value.road.tolist() == ["clean", "unet at 300"]


def test_sidebar_choices_hold_across_pages_and_a_visit_home(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    at.multiselect(key=scoped("reconstructors", key)).set_value(["tv", "unet"]).run()
    at.select_slider(key=scoped("level", key)).set_value(3000.0).run()
    at.selectbox(key=scoped("attribute", key)).set_value("age_band").run()
    for page in ("pages/home.py", "pages/fairness.py", "pages/mitigation.py", "pages/compare.py", "pages/failures.py",
                 "pages/posterior.py", "pages/run.py", "pages/overview.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        if page in ("pages/home.py", "pages/run.py"):
            continue  # no sidebar choices drawn there; they must come back on the next results page
        assert at.multiselect(key=scoped("reconstructors", key)).value == ["tv", "unet"], page
        assert at.select_slider(key=scoped("level", key)).value == 3000.0, page
        assert at.selectbox(key=scoped("attribute", key)).value == "age_band", page
    at.switch_page("pages/compare.py").run()
    assert at.dataframe[0].value.road.tolist() == ["clean", "tv", "unet"]


def test_sidebar_choices_are_kept_per_modality_across_pages_that_do_not_draw_them(both_modalities, monkeypatch):
    """Each modality's run keeps its own four choices: through Home, Run and the results pages, and a switch back."""
    store, xray, mri, cache = both_modalities
    picks = {xray: (["tv", "unet"], [300.0], 3000.0, "age_band"),
             mri: (["zero_filled", "unet"], [8.0], 4.0, "sex×age_band")}

    def shown(key: str) -> tuple:
        """The four sidebar choices of run `key` as the page drew them."""
        return (at.multiselect(key=scoped("reconstructors", key)).value,
                at.multiselect(key=scoped("levels", key)).value, at.select_slider(key=scoped("level", key)).value,
                at.selectbox(key=scoped("attribute", key)).value)

    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    for modality, key in ((XRay.name, xray), (MRI.name, mri)):
        at.selectbox(key="modality").set_value(modality).run()
        recons, levels, level, attribute = picks[key]
        at.multiselect(key=scoped("reconstructors", key)).set_value(recons).run()
        at.multiselect(key=scoped("levels", key)).set_value(levels).run()
        at.select_slider(key=scoped("level", key)).set_value(level).run()
        at.selectbox(key=scoped("attribute", key)).set_value(attribute).run()
        assert shown(key) == picks[key] and not at.exception
    for page in ("pages/home.py", "pages/fairness.py", "pages/run.py", "pages/compare.py", "pages/posterior.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        if page not in ("pages/home.py", "pages/run.py"):  # those two draw no sidebar choices
            assert at.selectbox(key="modality").value == MRI.name and shown(mri) == picks[mri], page
    at.selectbox(key="modality").set_value(XRay.name).run()
    assert shown(xray) == picks[xray]  # the X-ray run's choices, kept while MRI was shown on other pages
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/overview.py").run()
    assert at.selectbox(key="modality").value == XRay.name and shown(xray) == picks[xray] and not at.exception


def test_a_level_the_store_does_not_hold_for_a_reconstructor_gets_a_message(built_store, monkeypatch, tmp_path):
    store, key, cache = built_store
    partial = tmp_path / "partial.duckdb"
    shutil.copy(store.path, partial)
    with duckdb.connect(str(partial)) as con:
        for table in ("cells", "aggregates", "image_metrics", "image_scores", "examples"):  # names: not parameters
            con.execute("DELETE FROM " + table + " WHERE config_hash = ? AND reconstructor = 'tv' AND level = 300",
                        [key])
    for page, pick in (("pages/fairness.py", "fair_recon"), ("pages/failures.py", "fail_recon"),
                       ("pages/compare.py", None)):
        at = run_page(page, str(partial), monkeypatch, str(cache))
        at.select_slider(key=scoped("level", key)).set_value(300.0).run()
        if pick:
            at.selectbox(key=scoped(pick, key)).set_value("tv").run()
        assert not at.exception, page
        assert any("holds no results for" in w.value and "tv" in w.value for w in at.warning), page


def test_run_page_validates_configs_and_refuses_paths_outside_the_allow_list(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "bad.yaml").write_text("physics: {levels: [1000, -3]}\n")
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(allowed))
    at = run_page("pages/run.py", str(tmp_path / "s.duckdb"), monkeypatch, str(tmp_path))
    assert any("tiny-xray" in s.value or "demo-xray" in s.value for s in at.success)  # a shipped config validates
    at.radio(key="run_source").set_value("path").run()
    at.text_input(key="run_path").set_value("/etc/passwd.yaml").run()
    assert any("outside the folders Tandem may read" in e.value for e in at.error)
    at.text_input(key="run_path").set_value(str(allowed / "bad.yaml")).run()
    assert any("dose level -3" in e.value for e in at.error)
    assert not at.exception


def test_run_page_checks_a_real_dataset_before_any_run(tmp_path, monkeypatch):
    import pandas as pd

    from tests.test_csv_adapter import make_dataset

    allowed = tmp_path / "allowed"
    root = make_dataset(allowed / "cxr", ["M", "F"] * 48)  # 96 images: every split of a study holds 8
    spec = (f"cohort: {{source: csv, image_size: 32, csv: {{csv_path: {root}/labels.csv, image_root: {root}, "
            f"labels: [Cardiomegaly]}}}}\n")
    (allowed / "good.yaml").write_text(spec)
    outside = make_dataset(tmp_path / "elsewhere", ["M", "F"])
    (allowed / "outside.yaml").write_text(spec.replace(str(root), str(outside)))
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(allowed))
    at = run_page("pages/run.py", str(tmp_path / "s.duckdb"), monkeypatch, str(tmp_path))
    at.radio(key="run_source").set_value("path").run()
    at.text_input(key="run_path").set_value(str(allowed / "good.yaml")).run()
    assert any("Dataset manifest checked: 96 images" in i.value for i in at.info)
    assert any(b.label == "Start" for b in at.button)
    at.text_input(key="run_path").set_value(str(allowed / "outside.yaml")).run()
    assert any("cannot be read" in e.value and "outside the folders" in e.value for e in at.error)
    pd.read_csv(root / "labels.csv").drop(columns="Age").to_csv(root / "labels.csv", index=False)
    at.text_input(key="run_path").set_value(str(allowed / "good.yaml")).run()
    assert any("missing column(s) ['Age']" in e.value for e in at.error)
    assert not any(b.label == "Start" for b in at.button) and not at.exception


def test_run_page_describes_a_dataset_folder_without_yaml_and_starts_it(tmp_path, monkeypatch):
    """The whole browser path for real data: folder → columns → manifest check → Start → a finished run."""
    from recon_core import builds, paths
    from recon_core.store import Store, queries
    from tests.test_csv_adapter import make_dataset

    allowed = tmp_path / "allowed"
    n = 80
    root = make_dataset(allowed / "cxr", ["M", "F"] * (n // 2), n=n)
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(allowed))
    store_path = tmp_path / "s.duckdb"
    at = run_page("pages/run.py", str(store_path), monkeypatch, str(tmp_path))
    at.radio(key="run_source").set_value("dataset").run()
    at.text_input(key="run_dataset").set_value("/etc").run()
    assert any("outside the folders Tandem may read" in e.value for e in at.error)
    at.text_input(key="run_dataset").set_value(str(root)).run()
    assert at.selectbox(key="run_col_sex").value == "Sex" and at.multiselect(key="run_labels").value == [
        "Cardiomegaly"]
    assert any(f"Dataset manifest checked: {n} images" in i.value for i in at.info)
    at.selectbox(key="run_col_sex").set_value("subject_id").run()  # a wrong column choice is named, in words
    assert any("column 'subject_id': unknown or missing sex value in" in e.value for e in at.error)
    assert not any(b.label == "Start" for b in at.button)
    at.selectbox(key="run_col_sex").set_value("Sex").run()
    at.selectbox(key="run_col_age").set_value("Cardiomegaly").run()  # ages 0/1: one age band, no fairness
    assert any("'age_band' has a single value" in e.value for e in at.error)
    at.selectbox(key="run_col_age").set_value("Age").run()
    at.selectbox(key="run_base").set_value("tiny.yaml").run()
    start = next(b for b in at.button if b.label == "Start")
    start.click().run()
    assert not at.exception
    written = list((tmp_path / "configs").glob("cxr-xray-*.yaml"))
    assert len(written) == 1 and str(root) in written[0].read_text()
    deadline = time.monotonic() + 300
    # a real child process: wait for it
    while builds.running_build(paths.progress_path()) is not None and time.monotonic() < deadline:
        time.sleep(1)
    runs = queries.runs(Store(store_path))
    log = (tmp_path / "build.log").read_text() if (tmp_path / "build.log").exists() else ""
    assert runs.status.tolist() == ["done"], log[-2000:]
    assert runs.name.tolist() == ["cxr-xray"] and runs.cells_done.iloc[0] > 1


def test_overview_with_mri_selected_shows_dice_acceleration_and_outlines(mri_store, monkeypatch):
    store, key, cache = mri_store
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    assert at.selectbox(key="modality").value == MRI.name
    assert at.select_slider(key=scoped("level", key)).value == 8.0  # the most undersampled level is in focus first
    charts = at.get("plotly_chart")
    assert len(charts) == 11  # PSNR, Dice, grade AUROC; Dice by group, gaps; TPR, gaps; 2 gap curves; slides; examples
    assert any("Subgroups by sex at 8 ×" in h.value for h in at.header)
    table = at.dataframe[0].value
    assert {"Tumour Dice added", "Tumour Dice difference added", "Tumour Dice gap added"} <= set(table.statistic)
    assert any("Green: the true outline" in c.value for c in at.caption)
    at.select_slider(key=scoped("level", key)).set_value(4.0).run()
    at.selectbox(key=scoped("attribute", key)).set_value("age_band").run()
    assert not at.exception


def test_mri_pages_fairness_compare_and_failures(mri_store, monkeypatch):
    store, key, cache = mri_store
    at = run_page("pages/fairness.py", str(store.path), monkeypatch, str(cache))
    assert at.selectbox(key=scoped("fair_metric", key)).value == "dice"  # MRI's own defaults: Dice and its gap
    assert at.radio(key=scoped("fair_gap", key)).value == "dice_diff_added"  # the signed Dice change: primary
    at.selectbox(key=scoped("fair_metric", key)).set_value("dice").run()
    at.radio(key=scoped("fair_gap", key)).set_value("dice_gap_added").run()
    assert not at.exception
    assert at.radio(key=scoped("fair_task", key)).value == "dice"  # PSNR against Dice first on MRI
    at.radio(key=scoped("fair_task", key)).set_value("auroc").run()
    at.selectbox(key=scoped("fair_metric", key)).set_value("psnr_volume").run()  # per-volume quality, by group
    assert not at.exception and "Volume PSNR" in at.subheader[0].value
    at.switch_page("pages/compare.py").run()
    assert not at.exception and "Dice" in at.dataframe[0].value.columns
    at.switch_page("pages/failures.py").run()
    assert not at.exception
    assert at.radio(key="fail_rank").value == "dice"
    assert len(at.get("plotly_chart")) == 2
    # a Dice drop is the segmenter's answer changing: its attributions explain it, not the grade classifier's
    assert any("segmenter's evidence" in c.value for c in at.caption)
    assert at.radio(key=scoped("fail_method", "segmenter")).options == ["Integrated Gradients"]


def test_run_page_offers_no_start_for_a_finished_config(built_store, monkeypatch):
    store, _, cache = built_store
    at = run_page("pages/run.py", str(store.path), monkeypatch, str(cache))
    at.selectbox(key="run_config").set_value("tiny.yaml").run()
    assert not at.exception
    assert at.button(key="run_start").disabled
    assert any("run is finished" in i.value for i in at.info)
    at.selectbox(key="run_config").set_value("tiny-mri.yaml").run()  # not in this store: it can start
    assert not at.button(key="run_start").disabled


def test_posterior_page_on_empty_store_says_so(tmp_path, monkeypatch):
    at = run_page("pages/posterior.py", str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    assert any("No results yet" in info.value for info in at.info)


RAW_COLUMNS = {"ci_low", "ci_high", "p_value", "q_value", "n_pos", "grp", "dropped", "config_hash", "image_id",
               "age_band", "cells_done", "level_name", "clean_score", "recon_score", "dice_clean", "dice_recon",
               "dice_drop", "sha256", "contract_json"}
"""Stored column ids a page's table must not be headed by (beside every metric id)."""


def metric_ids(store, key) -> set[str]:
    """Every metric id the run stores, and the catalogue's: none may head a shown table or fill one of its cells."""
    return set(queries.aggregates(store, key).metric) | set(catalogue.BY_NAME) | set(catalogue.NAMED_GAPS)


def assert_tables_speak_plainly(at: AppTest, metrics: set[str], where: str) -> int:
    """No table of the page run is headed by a raw id, and no cell of it is a metric id; returns the tables seen."""
    for frame in at.dataframe:
        table = frame.value
        headers = {str(c) for c in table.columns} | {str(n) for n in table.index.names if n}
        assert not headers & (metrics | RAW_COLUMNS), (where, sorted(headers & (metrics | RAW_COLUMNS)))
        for column in table.columns:
            cells = {str(v) for v in table[column].dropna()} if table[column].dtype == object else set()
            assert not cells & metrics, (where, column, sorted(cells & metrics))
    return len(at.dataframe)


def test_no_page_shows_a_raw_metric_id_in_a_table(built_store, mri_store, monkeypatch):
    store, key, cache = built_store
    metrics = metric_ids(store, key)
    seen = 0
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    added = next(d for d in at.dataframe if "change [95 % CI]" in d.value.columns)
    assert "reconstructed − clean" in json.loads(added.proto.columns)["change [95 % CI]"]["help"].lower()
    for page in ("pages/home.py", "pages/overview.py", "pages/fairness.py", "pages/discovery.py", "pages/mitigation.py",
                 "pages/compare.py", "pages/posterior.py", "pages/run.py", "pages/failures.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        seen += assert_tables_speak_plainly(at, metrics, page)
    at.switch_page("pages/mitigation.py").run()
    at.toggle(key=scoped("mit_every", key)).set_value(True).run()  # every stored change, each in words
    seen += assert_tables_speak_plainly(at, metrics | {f"{m}_change" for m in metrics}, "mitigation, everything")
    at.switch_page("pages/fairness.py").run()
    at.radio(key=scoped("fair_gap", key)).set_value("eodd_added").run()  # a folded gap: the raw ids
    seen += assert_tables_speak_plainly(at, metrics, "fairness, eodd_added")
    at.switch_page("pages/failures.py").run()
    at.select_slider(key=scoped("level", key)).set_value(300.0).run()
    at.selectbox(key=scoped("fail_recon", key)).set_value("diffusion").run()  # most uncertain calls and draws
    at.toggle(key="fail_only").set_value(False).run()
    seen += assert_tables_speak_plainly(at, metrics, "failures, diffusion")
    store, key, cache = mri_store
    metrics = metric_ids(store, key)
    for page in ("pages/overview.py", "pages/fairness.py", "pages/discovery.py", "pages/failures.py"):
        at = run_page(page, str(store.path), monkeypatch, str(cache))
        seen += assert_tables_speak_plainly(at, metrics, f"MRI {page}")
    at.radio(key="fail_rank").set_value("dice").run()  # cases by Dice drop
    seen += assert_tables_speak_plainly(at, metrics, "MRI failures by Dice")
    assert seen >= 20


RAW_POSTERIOR_IDS = ("spread_error_rho", "interval_coverage", "posterior_std", "sample_flip", "sample_dice_flip")


def shown_text(at: AppTest) -> str:
    """Every heading, caption, markdown, message and table column of a page run, as one string."""
    parts = [e.value for kind in ("header", "subheader", "caption", "markdown", "info", "warning") for e in
             getattr(at, kind)]
    parts += [" ".join(map(str, d.value.columns)) for d in at.dataframe]
    parts += [str(o) for r in at.radio for o in r.options]
    return "\n".join(parts)


def test_posterior_page_shows_calibration_sample_flips_and_hallucinations(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/posterior.py", str(store.path), monkeypatch, str(cache))
    assert [h.value for h in at.header] == ["Calibration of the posterior spread", "Hallucination check on known truth"]
    # rank correlation and coverage by level, a statistic by group, the calibration curve, sample flips by group,
    # erased / invented per detector (diagnostic model, residual map)
    assert len(at.get("plotly_chart")) == 7
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert "calibrated: 0.95" in specs[1] and "calibrated (2 samples)" in specs[3]  # the targets are drawn
    overall = at.dataframe[0].value
    assert overall.reconstructor.tolist() == ["diffusion", "diffusion"] and overall.level.tolist() == ["3000", "300"]
    assert {"Spread–error rank correlation", "95 % interval coverage", "Sample flip rate"} <= set(overall.columns)
    assert set(at.dataframe[1].value.group) == {"F", "M"}
    halluc = at.dataframe[-1].value
    assert set(halluc.detector) == {"diagnostic model", "residual map"}
    assert set(halluc.reconstructor) == {"none", "tv", "unet", "gan", "diffusion", "unet+reweight", "unet+eodd",
                                         "unet+adversarial"} and "everyone" in set(halluc.group)
    text = shown_text(at)
    assert "Rule: matched filter at the known site" in text and "operating threshold" in text
    assert "sit above the line" in text  # the few-draw binning caveat is said beside the curve
    assert not any(raw in text for raw in RAW_POSTERIOR_IDS)  # human names only
    at.selectbox(key=scoped("attribute", key)).set_value("age_band").run()
    at.select_slider(key=scoped("level", key)).set_value(3000.0).run()
    at.radio(key=scoped("post_metric", key)).set_value("interval_coverage").run()
    at.radio(key=scoped("post_kind", key)).set_value("invented").run()
    assert not at.exception
    assert "Calibration curve at 3000 photons/pixel" in [s.value for s in at.subheader]
    assert set(at.dataframe[-1].value.group) == {"everyone", "<60", "60+"}
    at.multiselect(key=scoped("reconstructors", key)).set_value(["unet"]).run()  # no sampler picked
    assert not at.exception
    assert any("this run's samplers: diffusion" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 2 and set(at.dataframe[-1].value.reconstructor) == {"unet"}


def test_posterior_page_says_a_run_without_a_sampler_has_no_spread(mri_store, monkeypatch):
    store, _, cache = mri_store
    at = run_page("pages/posterior.py", str(store.path), monkeypatch, str(cache))
    assert any("No reconstructor of this run draws several posterior samples" in i.value for i in at.info)
    assert not any("calibrat" in c.proto.spec for c in at.get("plotly_chart"))  # no empty calibration chart
    assert at.header[-1].value == "Hallucination check on known truth"  # known tumour sites: the check still runs
    assert "segmenter" in shown_text(at)


def test_failure_cases_rank_a_samplers_most_uncertain_calls(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/failures.py", str(store.path), monkeypatch, str(cache))
    at.select_slider(key=scoped("level", key)).set_value(300.0).run()
    at.selectbox(key=scoped("fail_recon", key)).set_value("diffusion").run()
    assert not at.exception
    assert any(s.value.startswith("Most uncertain calls — diffusion") for s in at.subheader)
    ranked = at.dataframe[1].value
    assert ranked["Sample flip rate"].is_monotonic_decreasing and "posterior_std" not in ranked.columns
    draws = at.dataframe[2].value
    assert draws.road.tolist() == ["reported", "sample 1", "sample 2"]
    assert {"nodule", "calls that differ from the reported"} <= set(draws.columns)
    picker = at.selectbox(key=scoped("fail_uncertain", key))
    assert picker.value == ranked["image"].iloc[0]
    grid = at.get("plotly_chart")[1].proto.spec
    assert "one sample" in grid and "another sample" in grid and "posterior std" in grid
    examples = set(queries.examples(store, key, "diffusion", 300.0).image_id)
    replayed = next(i for i in ranked["image"] if i not in examples)  # not stored: its samples are drawn again
    picker.set_value(replayed).run()
    assert not at.exception and "posterior std" in at.get("plotly_chart")[1].proto.spec
    at.selectbox(key=scoped("fail_recon", key)).set_value("unet").run()  # one reconstruction: no such section
    assert not any(s.value.startswith("Most uncertain calls") for s in at.subheader)


def test_mitigation_on_empty_store_says_so(tmp_path, monkeypatch):
    at = run_page("pages/mitigation.py", str(tmp_path / "empty.duckdb"), monkeypatch, str(tmp_path))
    assert any("No results yet" in info.value for info in at.info)


def test_mitigation_page_judges_each_variant_against_its_base(built_store, monkeypatch):
    """Issue 12: the paired changes with verdicts in words, the Pareto picture with the bases, the quality cost."""
    store, key, cache = built_store
    variants = results.variants(results.run_view(store, key).reconstructors)
    assert variants, "configs/tiny.yaml declares mitigation variants"
    at = run_page("pages/mitigation.py", str(store.path), monkeypatch, str(cache))
    effects = at.dataframe[0].value
    assert set(effects.variant) == set(variants)
    assert {"change vs base [95 % CI]", "test", "verdict"} <= set(effects.columns)
    assert "paired" in json.loads(at.dataframe[0].proto.columns)["change vs base [95 % CI]"]["help"]
    assert not effects.statistic.str.contains("_").any()  # human names, never stored ids
    assert set(effects.verdict) <= {results.NO_CHANGE, "gap narrowed", "gap widened", "gain", "cost",
                                    "gap narrowed (difference reversed sign)", "gap widened (difference reversed sign)",
                                    "difference changed (the base's difference is unknown)", "no estimate"}
    assert any("(mitigation cost)" in t for t in effects.test) and any("paired" in c.value for c in at.caption)
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # Pareto picture, PSNR change, SSIM change
    frontier = charts[0].proto.spec
    assert "Pareto-optimal" in frontier and all(f'"name":"{r}"' in frontier for r in ("unet", *variants))
    points = at.dataframe[-1].value
    assert {"unet", *variants} == set(points.reconstructor)  # the bases (plain training) beside their variants
    assert points.groupby("level")["Pareto-optimal at its level"].apply(lambda s: (s == "✓").any()).all()
    assert any(b.label == "Download mitigation-effects (CSV)" for b in at.get("download_button"))
    at.toggle(key=scoped("mit_every", key)).set_value(True).run()
    assert len(at.dataframe[0].value) > len(effects)  # each finding's change too
    at.radio(key=scoped("mit_gap", key)).set_value("eodd").run()
    at.selectbox(key=scoped("attribute", key)).set_value("age_band").run()
    assert not at.exception
    assert "age band" in " ".join(h.value for h in at.subheader)


def test_mitigation_page_of_a_run_without_variants_explains_how_to_declare_them(built_store, monkeypatch, tmp_path):
    store, key, cache = built_store
    plain = tmp_path / "plain.duckdb"
    shutil.copy(store.path, plain)
    view = results.run_view(store, key)
    runs = queries.runs(store)
    description = results.describe(store, runs[runs.config_hash == key].iloc[0])
    description["reconstructors"] = [r for r in view.reconstructors if r not in results.variants(view.reconstructors)]
    with duckdb.connect(str(plain)) as con:
        con.execute("UPDATE runs SET description_json = ? WHERE config_hash = ?", [json.dumps(description), key])
        for table in ("cells", "aggregates", "mitigation_effects"):  # names: not parameters
            con.execute("DELETE FROM " + table + " WHERE config_hash = ? AND contains(reconstructor, '+')", [key])
    at = run_page("pages/mitigation.py", str(plain), monkeypatch, str(cache))
    assert any("has no mitigation variants" in info.value for info in at.info)
    assert "unet+eodd" in at.code[0].value and "mitigation:" in at.code[0].value
    assert not at.get("plotly_chart")


def test_mitigation_page_on_mri_judges_the_dice_gap_against_dice(mri_store, monkeypatch):
    """The modality decides the axes: the Dice gap against Dice on MRI, its signed Dice difference the headline."""
    store, key, cache = mri_store
    at = run_page("pages/mitigation.py", str(store.path), monkeypatch, str(cache))
    effects = at.dataframe[0].value
    assert set(effects.variant) == {"unet+eodd"} and "Tumour Dice difference change" in set(effects.statistic)
    assert at.radio(key=scoped("mit_gap", key)).value == "dice_gap"
    assert at.radio(key=scoped("mit_task", key)).options == ["Dice", "grade AUROC"]
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert layout["xaxis"]["title"]["text"] == "max − min Dice (smaller is fairer)"
    assert layout["yaxis"]["title"]["text"] == "Dice (higher is better)"
    assert set(at.dataframe[-1].value.reconstructor) == {"unet", "unet+eodd"}
    at.radio(key=scoped("mit_task", key)).set_value("auroc").run()
    assert not at.exception and "grade AUROC [95 % CI]" in at.dataframe[-1].value.columns


def test_overview_opens_on_an_example_whose_call_a_reconstruction_changes(built_store, monkeypatch):
    store, key, cache = built_store
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    run = results.run_view(store, key)
    level = at.select_slider(key=scoped("level", key)).value
    thresholds = queries.thresholds(store, key)
    flagged = []
    for image_id in sorted(queries.examples(store, key, "clean", 0.0).image_id.unique()):
        scores = queries.image_scores(store, key, image_id)
        scores = scores[(scores.reconstructor == "clean") | (scores.level == level)]
        clean = scores[scores.reconstructor == "clean"].set_index("label")
        for row in scores[(scores.reconstructor != "clean") & ~scores.reconstructor.isin(run.returns_degraded)
                          ].itertuples():  # the calls, made here without the flips module
            before, now = clean.score[row.label] >= thresholds[row.label], row.score >= thresholds[row.label]
            if (row.target == 0 and not before and now) or (row.target == 1 and before and not now):
                flagged.append(image_id)
    picker = at.selectbox(key=scoped("example", key))
    said = any(("invents" in w.value or "loses" in w.value) for w in at.warning)
    if flagged:
        assert picker.value == sorted(flagged)[0]  # the first example a reconstruction changes a call on
        assert "⚠ a reconstruction changes" in picker.format_func(picker.value) and said
    else:  # no example flips at this level: the first one, nothing flagged
        assert picker.value == picker.options[0] and "⚠" not in " ".join(picker.options) and not said
