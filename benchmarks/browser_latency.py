"""Browser latency: what a user waits for in Chromium, from a widget change until the page has settled again.

Runs `streamlit run app.py` on a free loopback port and drives Debian's Chromium through Playwright
(viewport 1440×900). Each interaction is timed inside the page, on the browser's own clock: from the
pointerdown or keydown of the change to the first animation frame after the page is settled, that is
Streamlit's script run has finished (`data-test-script-state` on the app root back at `notRunning`, no
spinner, skeleton or stale element left), every Plotly chart has drawn its `.main-svg`, and that held for one
frame. Streamlit's "Running…" status widget is noted per change but is not the end signal: it only appears
once a run has lasted 500 ms and fades out over 200 ms, so short runs never show it and long runs would be
billed for the fade.

    python -m benchmarks.browser_latency --store data/cache/tandem.duckdb [--cache data/cache] \
        [--modality xray mri] [--repeats 5] [--json latency.json]

Pages are opened by URL, each a fresh Streamlit session, so the modality is picked in the sidebar on every
page. Widgets are found by their visible labels. An interaction a page does not offer (no cases, a single
level) is reported as skipped. Needs the store's checkpoints under `<cache>/checkpoints` for Compare and
Failure cases, which replay images.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent
MODALITY_TEXT = {"xray": "X-ray", "mri": "MRI"}
"""What the sidebar's Modality option shows for each modality (titles such as "X-ray (low-dose)")."""
QUIET_MS = 1000
"""How long a page must stay settled before the next change: a page opened on a fresh server runs three times,
with gaps of up to ~300 ms between the runs on a busy machine."""
NO_RUN_MS = 3000
"""A change that has not started a script run after this long did not reach the server."""
SETTLE_TIMEOUT_MS = 180_000
"""Opening a page on a fresh server imports torch and warms every cache; slow on a busy machine."""

PROBE = """
(() => {
  const bench = window.__bench = {armed: false, input: null, ran: false, shown: false, readyAt: null,
                                  quietSince: null};
  bench.arm = () => Object.assign(bench, {armed: true, input: null, ran: false, shown: false, readyAt: null});
  const note = event => { if (bench.armed && bench.input === null) bench.input = event.timeStamp; };
  addEventListener('pointerdown', note, true);
  addEventListener('keydown', note, true);
  const state = 'data-test-script-state';
  new MutationObserver(records => {
    if (bench.armed && records.some(r => r.oldValue !== 'notRunning' || r.target.getAttribute(state) !== 'notRunning'))
      bench.ran = true;
  }).observe(document, {subtree: true, attributes: true, attributeOldValue: true, attributeFilter: [state]});
  bench.settled = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute(state) !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"], [data-stale="true"]'))
      return false;
    return [...document.querySelectorAll('.js-plotly-plot')].every(plot => plot.querySelector('.main-svg'));
  };
})();
"""
"""Installed in every document before Streamlit loads: notes the change's input time and every script run."""

FINISHED = """
noRunMs => {
  const bench = window.__bench;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) bench.shown = true;
  if (bench.input === null) return false;
  if (!bench.ran) return performance.now() - bench.input > noRunMs ? {ms: null, shown: false} : false;
  if (!bench.settled()) { bench.readyAt = null; return false; }
  if (bench.readyAt === null) { bench.readyAt = performance.now(); return false; }
  bench.armed = false;
  return {ms: performance.now() - bench.input, shown: bench.shown};
}
"""
"""Polled every animation frame after a change: the input-to-settled time once settled for one frame."""

QUIET = """
quietMs => {
  const bench = window.__bench;
  if (!bench.settled()) { bench.quietSince = null; return false; }
  bench.quietSince ??= performance.now();
  return performance.now() - bench.quietSince >= quietMs;
}
"""
"""Polled every animation frame: true once the page has stayed settled for quietMs."""


class Skipped(Exception):
    """The interaction cannot be timed here: a widget or option is missing, no run started, or the page raised."""


@dataclass
class Result:
    """One interaction's timings (ms) on one modality, or why it was skipped."""

    modality: str
    interaction: str
    times_ms: list[float] = field(default_factory=list)
    running_shown: int = 0
    skipped: str | None = None

    def row(self) -> tuple[str, float, float, float]:
        """(interaction, first ms, median ms, max ms); NaN where skipped."""
        name = f"{self.modality}: {self.interaction}"
        if self.skipped or not self.times_ms:
            return name, math.nan, math.nan, math.nan
        return name, self.times_ms[0], statistics.median(self.times_ms), max(self.times_ms)


def free_port() -> int:
    """A free loopback port for the server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store_path: Path, cache_dir: Path) -> tuple[subprocess.Popen, str]:
    """A fresh `streamlit run app.py` over the store on a free loopback port; (process, base URL) once it answers."""
    port = free_port()
    env = {**os.environ, "TANDEM_STORE": str(store_path), "TANDEM_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("streamlit did not come up within 60 s")


def settle(page: Page) -> None:
    """Waits until the page has stayed settled for QUIET_MS, so no earlier run bleeds into the next timing."""
    page.wait_for_function(QUIET, arg=QUIET_MS, polling="raf", timeout=SETTLE_TIMEOUT_MS)


def finish(page: Page, timeout_ms: int) -> tuple[float, bool]:
    """Waits for the armed change's run to settle; (input-to-settled ms, whether "Running…" was shown)."""
    outcome = page.wait_for_function(FINISHED, arg=NO_RUN_MS, polling="raf", timeout=timeout_ms).json_value()
    if outcome["ms"] is None:
        raise Skipped(f"the change started no script run within {NO_RUN_MS} ms")
    return outcome["ms"], outcome["shown"]


def arm(page: Page) -> None:
    """Starts a timing: the next pointerdown or keydown in the page is the change."""
    page.evaluate("window.__bench.arm()")


def labelled(page: Page, testid: str, label: str) -> Locator:
    """The widgets of that Streamlit type whose visible label is exactly `label` (widget keys are internal)."""
    return page.get_by_test_id(testid).filter(has=page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True))


def widget(page: Page, testid: str, label: str) -> Locator:
    """The one widget of that type labelled `label`; Skipped if the page has none."""
    found = labelled(page, testid, label)
    if found.count() == 0:
        raise Skipped(f'no "{label}" widget on this page')
    return found.first


def open_options(page: Page, label: str) -> tuple[str, list[str]]:
    """Opens the selectbox labelled `label`; (its current value, the options its list shows).

    The current value is the list's selected option: the box's own text can be stale, since Streamlit keeps
    showing the old label when a rerun changes a selectbox's options (e.g. "Study run" after a modality
    switch). Where no option is marked selected either, the first one, Streamlit's default, is assumed.
    """
    box = widget(page, "stSelectbox", label)
    shown = box.get_by_role("combobox").input_value()
    box.scroll_into_view_if_needed()
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    box.get_by_role("button", name="Open").click()  # not during a scroll: react-aria drops a press that scrolls
    options = page.get_by_role("option")
    options.first.wait_for()
    texts = options.all_inner_texts()
    selected = page.get_by_role("option", selected=True).all_inner_texts()
    return (selected or [shown if shown in texts else texts[0]])[0], texts


def pick(page: Page, option: str) -> None:
    """Arms the timing and clicks the open list's option `option`: the change the user waits on."""
    arm(page)
    page.get_by_role("option", name=option, exact=True).click()


def choose_modality(page: Page, modality: str) -> None:
    """Sets the sidebar's Modality to the option showing the modality's name, if it is not already."""
    text = MODALITY_TEXT[modality]
    current, options = open_options(page, "Modality")
    if text in current:
        page.keyboard.press("Escape")
        return
    matching = [o for o in options if text in o]
    if not matching:
        raise SystemExit(f"the store holds no {modality} run (Modality offers {options})")
    pick(page, matching[0])
    finish(page, SETTLE_TIMEOUT_MS)
    settle(page)


def open_page(page: Page, url: str, modality: str) -> None:
    """Opens a page by URL (a fresh session), picks the modality and waits until the page has settled."""
    page.goto(url)
    settle(page)
    choose_modality(page, modality)


def change_level(page: Page, i: int) -> None:
    """Moves the "Level in focus" slider one step by keyboard: left, right, … (turning at either end)."""
    slider = widget(page, "stSlider", "Level in focus").get_by_role("slider")
    value, low, high = (int(slider.get_attribute(a) or 0) for a in ("value", "min", "max"))
    if low == high:
        raise Skipped("the run has a single level")
    key = "ArrowLeft" if i % 2 == 0 else "ArrowRight"
    if value == low:
        key = "ArrowRight"
    elif value == high:
        key = "ArrowLeft"
    slider.focus()
    arm(page)
    slider.press(key)


def switch_between(label: str, choices: Callable[[list[str]], list[str]]) -> Callable[[Page, int], None]:
    """A change that flips the selectbox `label` between two of its options, picked from the shown options."""
    def change(page: Page, _: int) -> None:
        current, options = open_options(page, label)
        pair = choices(options)
        if len(pair) < 2 or any(p not in options for p in pair):
            page.keyboard.press("Escape")
            raise Skipped(f'"{label}" does not offer {pair or "two options"}')
        pick(page, pair[1] if current == pair[0] else pair[0])
    return change


def next_option(label: str) -> Callable[[Page, int], None]:
    """A change that moves the selectbox `label` to the option after its current one (wrapping around)."""
    def change(page: Page, _: int) -> None:
        current, options = open_options(page, label)
        if len(options) < 2:
            page.keyboard.press("Escape")
            raise Skipped(f'"{label}" offers a single option')
        pick(page, options[(options.index(current) + 1) % len(options)])
    return change


def nudge(label: str) -> Callable[[Page, int], None]:
    """A change that moves the slider `label` one step by keyboard: right, left, right, …"""
    def change(page: Page, i: int) -> None:
        slider = widget(page, "stSlider", label).get_by_role("slider")
        slider.focus()
        arm(page)
        slider.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
    return change


def show_every_case(page: Page) -> None:
    """Failure cases: when no case is listed, shows every case rather than only lost or invented findings."""
    if labelled(page, "stSelectbox", "Case").count() == 0:
        toggle = page.get_by_text("Only lost or invented findings")
        if toggle.count():
            arm(page)
            toggle.click()
            finish(page, SETTLE_TIMEOUT_MS)
            settle(page)


INTERACTIONS: list[tuple[str, str, Callable[[Page, int], None]]] = [
    ("Overview: level in focus", "overview", change_level),
    ("Overview: subgroups by", "overview", switch_between("Subgroups by", lambda _: ["Sex", "Age band"])),
    ("Fairness: metric", "fairness", switch_between("Metric", lambda options: options[:2])),
    ("Compare: test image", "compare", next_option("Test image")),
    ("Failure cases: case", "failures", next_option("Case")),
    ("Failure cases: before/after slider", "failures", nudge("Before / after: reconstruction shown")),
]
"""(name, page path, the i-th change): the changes timed, in order."""


def measure(page: Page, url: str, modality: str, name: str, path: str, change: Callable[[Page, int], None],
            repeats: int, timeout_ms: int) -> Result:
    """Opens the page and times `repeats` changes, letting the page settle between them."""
    result = Result(modality, name)
    try:
        open_page(page, f"{url}/{path}", modality)
        if path == "failures":
            show_every_case(page)
        for i in range(repeats):
            change(page, i)
            ms, shown = finish(page, timeout_ms)
            if page.get_by_test_id("stException").count():
                raise Skipped(f"the page raised: {page.get_by_test_id('stException').first.inner_text()[:200]}")
            result.times_ms.append(ms)
            result.running_shown += shown
            settle(page)
    except Skipped as exc:
        result.skipped = str(exc)
    except PlaywrightTimeout as exc:
        result.skipped = f"timed out: {str(exc).splitlines()[0]}"
    return result


def report(results: list[Result], repeats: int) -> None:
    """Prints one line per interaction: first, median and max ms, and how often "Running…" showed."""
    print(f"{'interaction':<44}{'first ms':>10}{'median ms':>11}{'max ms':>9}  Running… shown   ({repeats} repeats)")
    for result in results:
        name, first, median, worst = result.row()
        if result.skipped:
            print(f"{name:<44}  skipped: {result.skipped}")
        else:
            print(f"{name:<44}{first:>10.0f}{median:>11.0f}{worst:>9.0f}  {result.running_shown}/{repeats}")


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    """Prints and returns (interaction, first ms, median ms, max ms) per modality and interaction; NaN if skipped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--cache", type=Path, help="the cache folder holding checkpoints/ (default: the store's)")
    parser.add_argument("--modality", nargs="+", default=["xray"], choices=sorted(MODALITY_TEXT))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120, help="seconds one change may take to settle")
    parser.add_argument("--json", type=Path, help="also write every timing here")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed")
    proc, url = start_server(args.store.resolve(), (args.cache or args.store.parent).resolve())
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.add_init_script(PROBE)
            for modality in args.modality:
                for name, path, change in INTERACTIONS:
                    results.append(measure(page, url, modality, name, path, change, args.repeats,
                                           int(args.timeout * 1000)))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    report(results, args.repeats)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return [r.row() for r in results]


if __name__ == "__main__":
    main()
