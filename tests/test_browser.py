"""End to end in a real browser: `streamlit run app.py` on a free loopback port, driven by Debian's Chromium.

Opens a page URL first on a fresh server (the routing case Streamlit gets wrong with a `pages/`
folder), changes widgets, downloads a CSV, renders a failure case with its attributions, and saves
screenshots under test-output/.
Never skipped silently: without a `chromium` binary these tests fail, unless TANDEM_SKIP_BROWSER is
set (then they are skipped, by the user's own choice, with that reason). `make test` checks for
Chromium before it starts; `.ci/run` installs it.
"""

from __future__ import annotations

import pytest
import yaml

from recon_core import findings, results
from recon_core.store import queries
from tests.browser_support import BROWSER, OUT, pick, settled, start_server

pytestmark = BROWSER
PAGES = {"home": "Tandem", "overview": "Overview", "fairness": "Fairness", "discovery": "Weak subgroups",
         "mitigation": "Mitigation",
         "compare": "Compare reconstructors", "failures": "Failure cases", "posterior": "Uncertainty & hallucinations",
         "run": "Run a study"}
HELPERS = ("routing", "data", "sidebar", "figures", "tables", "ui", "common")


def test_overview_opened_first_renders_through_the_app(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/overview")
    page.locator(".js-plotly-plot").nth(5).wait_for(timeout=60_000)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Fairness" in nav and not any(h in nav.split() for h in HELPERS)  # app.py's navigation, not legacy
    page.screenshot(path=str(OUT / "overview.png"), full_page=True)
    sidebar = page.locator('[data-testid="stSidebar"]')
    subgroups = sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Subgroups by")
    subgroups.scroll_into_view_if_needed()  # below the run's eight reconstructors: the sidebar scrolls
    subgroups.click()
    page.get_by_role("option", name="Age band", exact=True).click()
    page.get_by_text("Equal-opportunity gap (mean over findings) by age band").wait_for(timeout=30_000)
    slider = sidebar.get_by_role("slider")
    slider.focus()
    slider.press("ArrowLeft")  # the level in focus: 300 → 3000 photons/pixel (the milder level is on the left)
    page.get_by_text("Subgroups by age band at 3000 photons/pixel").wait_for(timeout=30_000)
    recons = sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text="Reconstructors")
    recons.get_by_role("button", name="Remove none").click()  # drop `none` from every chart
    expect(recons.get_by_role("button", name="Remove none")).to_have_count(0)
    expect(recons.get_by_role("button", name="Remove unet", exact=True)).to_have_count(1)
    page.locator(".js-plotly-plot").nth(5).wait_for(timeout=60_000)
    # the rerun after removing `none` must be over: a click on a button the rerun replaces is lost
    page.locator('[data-test-script-state="notRunning"]').first.wait_for(state="attached", timeout=60_000)
    page.wait_for_timeout(500)
    assert page.locator('[data-testid="stException"]').count() == 0
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download a report of this selection (HTML, opens offline)").click()
    report = download.value.path().read_text()
    assert report.startswith("<!doctype html>") and "plotly-graph-div" in report and "by age_band" in report
    (OUT / "report.html").write_text(report)


def test_overview_says_what_the_study_shows_with_the_stores_numbers(server, page, built_store):
    store, key, _ = built_store
    page.goto(f"{server}/overview")
    panel = page.locator(".st-key-findings")
    panel.get_by_text(findings.TITLE).wait_for(timeout=60_000)
    settled(page)
    text = " ".join(panel.inner_text().split())
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    worst = run.worst_level(sorted(set(agg.level) - {0.0}))
    checks = {r: results.hallucination_rates(store, key, r, worst, ["sex"]) for r in run.reconstructors}
    for finding in findings.study_findings(agg, run, checks=checks):  # every sentence, as written from the store
        assert " ".join(finding.text.split()) in text
    assert "Known truth at" in text
    every = agg[(agg.attribute == "all") & (agg.level == worst) & agg.label.isin(["", "mean"])]
    for recon in run.reconstructors:  # the numbers, read here from the store without the findings module
        psnr = every[(every.reconstructor == recon) & (every.metric == "psnr")].iloc[0]
        added = every[(every.reconstructor == recon) & (every.metric == "auroc_added")].iloc[0]
        assert f"{psnr.estimate:.3f} [{psnr.ci_low:.3f}, {psnr.ci_high:.3f}] dB" in text
        assert f"{added.estimate:+.3f} [{added.ci_low:+.3f}, {added.ci_high:+.3f}] at {worst:g}" in text
    primary = agg[(agg.family == "primary") & agg.p_value.notna()]
    assert f"primary test family (Sensitivity (TPR) difference added, {len(primary)} tests" in text
    assert ("Added subgroup gaps: none" in text) == (not (primary.q_value < 0.05).any())
    assert page.locator('[data-testid="stException"]').count() == 0


def test_fairness_changes_attribute_and_downloads_csv(server, page):
    page.goto(f"{server}/fairness")
    page.get_by_text("Does image quality predict the task?").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    settled(page)  # a click on a button that a rerun replaces is lost (seen under load at the suite's end)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download quality-task-correlations (CSV)").click()
    path = download.value.path()
    header = path.read_text().splitlines()[0]
    assert header.startswith("scope,x_metric,y_metric,attribute,estimate,ci_low,ci_high")
    settled(page)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Interactive HTML").first.click()
    html = download.value.path().read_text()
    assert download.value.suggested_filename.endswith("-group-metric.html")  # tandem-<hash8>-group-metric.html
    assert "<html>" in html and "plotly-graph-div" in html and 'src="https://' not in html  # opens offline
    page.screenshot(path=str(OUT / "fairness.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_mitigation_page_draws_the_pareto_picture(server, page):
    """Issue 12: the Pareto picture renders in the browser, the bases and the Pareto-optimal rings in its legend."""
    from playwright.sync_api import expect

    page.goto(f"{server}/mitigation")
    page.get_by_role("heading", name="Mitigation", exact=True).first.wait_for(timeout=60_000)
    frontier = page.locator(".js-plotly-plot").filter(has_text="Pareto picture")
    frontier.wait_for(timeout=60_000)
    legend = frontier.locator(".legendtext")
    expect(legend.filter(has_text="Pareto-optimal")).to_have_count(1, timeout=30_000)
    assert {"unet", "unet+eodd"} <= set(legend.all_text_contents())  # SVG text: no inner text
    frontier.scroll_into_view_if_needed()
    page.screenshot(path=str(OUT / "mitigation.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_failure_case_attributions_render(server, page):
    page.goto(f"{server}/failures")
    page.get_by_text("Why did the decision change?").wait_for(timeout=90_000)
    page.get_by_text("Only lost or invented findings").click()  # show every case, so one is always there
    page.get_by_text("IG · clean").wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=str(OUT / "failure-case.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_uncertainty_page_draws_the_calibration_curve_and_the_hallucination_rates(server, page):
    """Issue 17: the spread's calibration curve (with its calibrated line) and the hallucination rates per detector,
    each detector's rule stated beside its chart, the rates' table downloadable."""
    from playwright.sync_api import expect

    page.goto(f"{server}/posterior")
    page.get_by_role("heading", name="Uncertainty & hallucinations", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("Hallucination check on known truth").wait_for(timeout=120_000)
    curve = page.locator(".js-plotly-plot").filter(has_text="calibrated (2 samples)")
    curve.wait_for(timeout=60_000)
    assert curve.locator(".legendtext").filter(has_text="everyone").count() == 1
    expect(page.locator(".js-plotly-plot").filter(has_text="calibrated: 0.95")).to_have_count(
        1, timeout=60_000)  # coverage's target (its chart may draw after the curve's)
    page.get_by_text("Detector: residual map.").wait_for(timeout=60_000)
    assert page.get_by_text("Detector: diagnostic model.").count() == 1
    expect(page.locator(".js-plotly-plot").filter(has_text="Known lesion erased at 300")).to_have_count(
        2, timeout=60_000)  # one per detector
    settled(page)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download hallucinations-by-sex (CSV)").click()
    rows = download.value.path().read_text().splitlines()
    assert rows[0] == "reconstructor,level,detector,what,group,rate [95 % CI],images"
    assert any(",residual map,known lesion erased," in r for r in rows)
    curve.scroll_into_view_if_needed()
    page.screenshot(path=str(OUT / "uncertainty.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


@pytest.mark.parametrize("name", [p for p in PAGES if p != "overview"])
def test_any_page_opened_first_on_a_fresh_server_renders_through_the_app(built_store, browser, name):
    """Streamlit's legacy `pages/` mode takes over when a page URL is a fresh server's first request: not here."""
    store, _, cache = built_store
    proc, url = start_server(store, cache)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url if name == "home" else f"{url}/{name}")
        page.get_by_role("heading", name=PAGES[name], exact=True).first.wait_for(timeout=60_000)
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert all(title in nav for title in ("Home", "Overview", "Fairness", "Weak subgroups", "Mitigation", "Compare",
                                              "Failure cases", "Uncertainty & hallucinations", "Run"))
        assert not any(h in nav.split() for h in HELPERS)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_a_torchscript_reconstructor_picked_on_the_run_page_lands_beside_the_built_ins(browser, tmp_path,
                                                                                       monkeypatch):
    """Issue 11 end to end: Run page → pick a TorchScript file in an allowed folder → Start → its curve on Overview."""
    from playwright.sync_api import expect

    from recon_core.store import Store
    from tests.test_app_user_models import quick_spec, save_torchscript

    allowed, cache = tmp_path / "allowed", tmp_path / "cache"
    model = save_torchscript(allowed / "models" / "smooth.pt").resolve()
    study = allowed / "study.yaml"
    study.write_text(yaml.safe_dump({**quick_spec(names=["none", "tv"]), "name": "tiny-byo"}))
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(allowed))
    cache.mkdir()
    proc, url = start_server(Store(cache / "tandem.duckdb"), cache)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/run")
        page.get_by_text("A YAML file in an allowed folder").click()
        path = page.get_by_role("textbox", name="Config path")
        path.fill(str(study))
        path.press("Enter")
        page.get_by_text("reconstructors none, tv at levels").wait_for(timeout=60_000)
        settled(page)
        page.get_by_text("Your reconstructor (a TorchScript file)").click()
        pick(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Model file"), str(model))
        settled(page)
        name = page.get_by_role("textbox", name="Name")
        name.fill("mine")
        name.press("Enter")
        settled(page)
        page.get_by_role("button", name="Add to the study").click()
        page.get_by_text("reconstructors none, tv, mine at levels").wait_for(timeout=60_000)
        page.screenshot(path=str(OUT / "run-user-model.png"), full_page=True)
        settled(page)
        page.get_by_role("button", name="Start").click()
        page.get_by_text("This config's run is finished").wait_for(timeout=600_000)
        assert list((cache / "configs").glob("tiny-byo-*.yaml")), "the generated config is kept for the CLI"
        page.goto(f"{url}/overview")
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
        legend = page.locator(".js-plotly-plot").first.locator(".legendtext")
        expect(legend.filter(has_text="mine")).to_have_count(1, timeout=30_000)
        assert {"none", "tv", "mine"} <= set(legend.all_text_contents())  # SVG text: no inner text
        assert page.get_by_text("Failed cells").count() == 0
        cards = page.locator('[data-testid="stExpander"]').filter(has_text="Models from outside Tandem (1)")
        cards.get_by_text("Models from outside Tandem (1)").click()
        cards.locator('[data-testid="stDataFrame"]').wait_for(timeout=30_000)
        page.screenshot(path=str(OUT / "overview-user-model.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
        proc.terminate()
        proc.wait(timeout=20)
