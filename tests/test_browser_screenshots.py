"""Every page of the dashboard photographed in Chromium at 1440×900, and the sidebar's choices across pages.

The pages are app.py's navigation, read from its source, so a page added there is photographed
too. Each shot is the full page of a 1440-wide window (the window grows to the page's height for
the shot, since Streamlit scrolls its main area, not the document). A page that draws the
run picker is photographed once per modality the store holds ('overview-xray.png', …).

Plain `make test` photographs the tiny store into test-output/screenshots/ (not committed);
`make screenshots` sets TANDEM_SCREENSHOT_STORE to the demo store and refreshes docs/screenshots/,
which the README points to.
"""

from __future__ import annotations

import ast
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pages.ui.sidebar import run_labels
from recon_core import results
from recon_core.store import Store
from tests.browser_support import BROWSER, OUT, pick, settled, start_server
from tests.conftest import ROOT

pytestmark = BROWSER
WIDTH, HEIGHT = 1440, 900
STORE_VARIABLE = "TANDEM_SCREENSHOT_STORE"
"""Set (by `make screenshots`) to a store's path: photograph that store into docs/screenshots/."""
DOCS = ROOT / "docs" / "screenshots"


@dataclass(frozen=True)
class AppPage:
    """One entry of app.py's navigation: its file, its title in the sidebar, the heading its file draws."""

    path: str
    title: str
    heading: str
    default: bool

    @property
    def name(self) -> str:
        """'overview' for pages/overview.py: the PNG's name and (but for the default page) the URL path."""
        return Path(self.path).stem

    def url(self, base: str) -> str:
        """The page's address on the server at `base` (Streamlit names a page's URL after its file)."""
        return base if self.default else f"{base}/{self.name}"


def _literal(call: ast.Call, keyword: str, position: int) -> object:
    """The constant value of a call's argument given by keyword or position, or None."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return ast.literal_eval(kw.value)
    return ast.literal_eval(call.args[position]) if len(call.args) > position else None


def _calls(source: Path, attribute: str) -> list[ast.Call]:
    """The calls `st.<attribute>(…)` in a Python file, in source order."""
    tree = ast.parse(source.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == attribute and isinstance(n.func.value, ast.Name) and n.func.value.id == "st"]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def app_pages() -> list[AppPage]:
    """Every page of app.py's st.navigation, in its order, with the title its own file draws as its heading."""
    pages = []
    for call in _calls(ROOT / "app.py", "Page"):
        path = str(_literal(call, "page", 0))
        titles = _calls(ROOT / path, "title")
        assert titles, f"{path} draws no st.title: the screenshot test finds each page by its heading"
        pages.append(AppPage(path, str(_literal(call, "title", 1)), str(_literal(titles[0], "body", 0)),
                             bool(_literal(call, "default", 99))))
    return pages


def test_the_page_list_is_app_pys_navigation():
    """The list the screenshots follow is the app's: every page file it routes, Home first, each with a heading."""
    pages = app_pages()
    routed = {p.path for p in pages}
    assert {"pages/home.py", "pages/overview.py", "pages/fairness.py", "pages/run.py"} <= routed
    assert routed == {f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py")}  # no page file left out
    assert [p.default for p in pages].count(True) == 1 and pages[0].heading == "Tandem"
    assert next(p for p in pages if p.name == "compare").heading == "Compare reconstructors"


@dataclass(frozen=True)
class Target:
    """What a screenshot run photographs: a store, its cache folder (models for Failure cases), where PNGs go."""

    store: Store
    cache: Path
    folder: Path


@pytest.fixture(scope="module")
def target(request) -> Target:
    """The store named by TANDEM_SCREENSHOT_STORE into docs/screenshots/, else the tiny store into test-output/."""
    chosen = os.environ.get(STORE_VARIABLE)
    if not chosen:
        store, _, cache = request.getfixturevalue("built_store")
        return Target(store, cache, OUT / "screenshots")
    path = Path(chosen).resolve()
    if not path.is_file():
        pytest.fail(f"no demo store at {path}: build it with `make demo` (X-ray) and `make demo-mri` (MRI), "
                    "then run `make screenshots` again", pytrace=False)
    return Target(Store(path), path.parent, DOCS)


def drawn(page) -> None:
    """Waits for the script run to end and for every chart and image of the page to be drawn."""
    settled(page)
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                                      .every(c => c.querySelector('.main-svg'))
                              && [...document.images].every(i => i.complete)""", timeout=60_000)
    page.wait_for_timeout(500)


def shoot(page, path: Path) -> tuple[int, int]:
    """A full-page PNG of a 1440-wide window: the window is made as tall as the main area's content for the shot."""
    page.evaluate("document.activeElement?.blur()")  # no focus ring left on the picker last clicked
    page.mouse.move(WIDTH // 2, 0)  # nor a hover effect (over the sidebar it shows its collapse button)
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, height)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    with Image.open(path) as image:
        return image.size


def test_every_page_is_photographed_at_1440_wide(target, browser):
    """One PNG per page (per modality where the page draws the run picker), each page's heading shown, no error."""
    modalities = results.runs(target.store).drop_duplicates("modality").sort_values("modality")
    staging = target.folder.with_name(f"{target.folder.name}.new")  # a run that fails midway leaves the old set
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    proc, url = start_server(target.store, target.cache)
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    shots = []
    try:
        for app_page in app_pages():
            page.goto(app_page.url(url))
            heading = page.get_by_role("heading", name=app_page.heading, exact=True).first
            heading.wait_for(timeout=120_000)
            settled(page)  # the sidebar is drawn after the heading
            picker = in_sidebar(page, "stSelectbox", "Modality")
            names = [(f"{app_page.name}-{m.modality}", m.title) for m in modalities.itertuples()] \
                if picker.count() else [(app_page.name, None)]
            for name, title in names:
                if title is not None:
                    pick(page, picker, title)
                    heading.wait_for(timeout=120_000)
                    settled(page)
                    assert picker.get_by_role("combobox").input_value() == title, name
                drawn(page)
                assert page.locator('[data-testid="stException"]').count() == 0, name
                assert heading.is_visible(), name
                width, height = shoot(page, staging / f"{name}.png")
                assert width == WIDTH and height >= HEIGHT, (name, width, height)
                shots.append(name)
    finally:
        context.close()
        proc.terminate()
        proc.wait(timeout=20)
    assert len(shots) >= len(app_pages())
    target.folder.mkdir(parents=True, exist_ok=True)
    for stale in target.folder.glob("*.png"):  # a page no longer in the app leaves no stale picture
        stale.unlink()
    for shot in staging.glob("*.png"):
        shot.replace(target.folder / shot.name)
    staging.rmdir()
    assert sorted(p.stem for p in target.folder.glob("*.png")) == sorted(shots)


@pytest.fixture(scope="module")
def both_server(both_modalities):
    """The dashboard on the store holding the tiny X-ray and MRI runs: its URL."""
    store, _, _, cache = both_modalities
    proc, url = start_server(store, cache)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def in_sidebar(page, testid: str, label: str):
    """The sidebar's widget of that Streamlit type whose visible label is exactly `label`."""
    return page.locator('[data-testid="stSidebar"]').get_by_test_id(testid).filter(
        has=page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)).first


def sidebar_choices(page) -> tuple[list[str], list[str], str, str]:
    """The four shared choices as the sidebar shows them: reconstructors, levels, level in focus, attribute."""
    def tags(label: str) -> list[str]:
        """The chips of the sidebar multiselect labelled `label` (its visible box, not its template copy)."""
        box = in_sidebar(page, "stMultiSelect", label).locator(".react-aria-ComboBox [data-tag]")
        return [tag.get_attribute("aria-label") for tag in box.all()]

    level = in_sidebar(page, "stSlider", "Level in focus").get_by_role("slider")
    attribute = in_sidebar(page, "stSelectbox", "Subgroups by").get_by_role("combobox")
    return tags("Reconstructors"), tags("Levels on the curves"), level.get_attribute("aria-valuetext"), \
        attribute.input_value()


def go(page, title: str, heading: str) -> None:
    """Follows the sidebar's navigation link `title`, as a user does, and waits for the page's heading."""
    settled(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=120_000)
    settled(page)


def choose_modality(page, title: str) -> None:
    """Picks the sidebar's Modality by its title ('MRI (accelerated)') and waits for the page to settle."""
    box = in_sidebar(page, "stSelectbox", "Modality")
    pick(page, box, title)
    settled(page)


def shows_run_of(page, runs: pd.DataFrame, key: str) -> None:
    """Asserts that the sidebar's Modality, run picker and the line under it all name run `key` and its modality."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    title = runs.set_index("config_hash").title[key]
    assert in_sidebar(page, "stSelectbox", "Modality").get_by_role("combobox").input_value() == title
    assert in_sidebar(page, "stSelectbox", "Study run").get_by_role("combobox").input_value() \
        == run_labels(runs)[key]
    assert sidebar.get_by_text(f"{title} · ").count() == 1  # the run's state under the picker


def test_sidebar_choices_survive_a_page_change_and_belong_to_their_modality(both_server, both_modalities, browser):
    """Reconstructors, levels, level in focus and attribute changed on Overview are what Fairness, Compare and
    Overview again show after a visit to Home, reached through the sidebar; the MRI run has its own, and the run
    label shown after a modality switch is always that modality's run."""
    from playwright.sync_api import expect

    store, xray, mri, _ = both_modalities
    runs = results.runs(store)
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    try:
        page.goto(f"{both_server}/overview")
        page.get_by_role("heading", name="Overview", exact=True).wait_for(timeout=120_000)
        settled(page)
        choose_modality(page, runs.set_index("config_hash").title[xray])
        shows_run_of(page, runs, xray)
        first = sidebar_choices(page)
        for label, option in (("Reconstructors", first[0][0]), ("Levels on the curves", first[1][0])):
            remove = in_sidebar(page, "stMultiSelect", label).get_by_role("button", name=f"Remove {option}", exact=True)
            remove.click()  # a locator's click scrolls the long sidebar and finds the element anew after a rerun
            expect(remove).to_have_count(0, timeout=60_000)
            settled(page)
        slider = in_sidebar(page, "stSlider", "Level in focus").get_by_role("slider")
        slider.press("ArrowLeft")  # one level milder: the level in focus starts at the most degraded, the right end
        settled(page)
        pick(page, in_sidebar(page, "stSelectbox", "Subgroups by"), "Age band")
        settled(page)
        chosen = sidebar_choices(page)
        assert chosen == (first[0][1:], first[1][1:], chosen[2], "Age band") and chosen[2] != first[2], chosen
        for title, heading in (("Fairness", "Fairness"), ("Home", "Tandem"), ("Compare", "Compare reconstructors"),
                               ("Overview", "Overview")):
            go(page, title, heading)
            assert page.locator('[data-testid="stException"]').count() == 0, title
            if title != "Home":  # Home draws no run picker; the choices come back on the next page
                shows_run_of(page, runs, xray)
                assert sidebar_choices(page) == chosen, title
        choose_modality(page, runs.set_index("config_hash").title[mri])
        shows_run_of(page, runs, mri)
        mri_choices = sidebar_choices(page)
        assert mri_choices[0] == list(results.run_view(store, mri).reconstructors)  # its own run's, all of them
        go(page, "Fairness", "Fairness")
        shows_run_of(page, runs, mri)
        assert sidebar_choices(page) == mri_choices
        choose_modality(page, runs.set_index("config_hash").title[xray])
        shows_run_of(page, runs, xray)
        assert sidebar_choices(page) == chosen  # the X-ray run's choices, kept while MRI was shown
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()
