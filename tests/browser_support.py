"""What every browser test file shares: the Chromium check, the server launcher, waiting for a settled page.

The `server`, `browser` and `page` fixtures built on these live in conftest.py, so each browser
test file only sets `pytestmark = BROWSER` and asks for them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from benchmarks import browser_latency
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium")
OUT = ROOT / "test-output"
BROWSER = pytest.mark.skipif(bool(os.environ.get("TANDEM_SKIP_BROWSER")) and not os.environ.get("CI"),
                             reason="TANDEM_SKIP_BROWSER is set: the browser tests were skipped on request")
"""Never a silent skip: without Chromium the tests fail (and in CI they run whatever the variable says)."""
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_chromium() -> str:
    """Debian's chromium binary, or the test fails saying how to install it."""
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium "
                    "(or set TANDEM_SKIP_BROWSER=1 to skip the browser tests knowingly)")
    return CHROMIUM


def start_server(store, cache) -> tuple[subprocess.Popen, str]:
    """A fresh `streamlit run app.py` on a free loopback port (the benchmark's launcher); fails without Chromium."""
    require_chromium()
    try:
        return browser_latency.start_server(store.path, cache)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def settled(page) -> None:
    """Waits until the app's script run is over: a click on an element a rerun replaces is lost."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(state="attached",
                                                                                      timeout=60_000)
    page.wait_for_timeout(300)


def pick(page, selectbox, option: str, tries: int = 5) -> None:
    """Picks `option` in a Streamlit selectbox, opening its list again when the click that should open it was lost
    (seen now and then on the Run page, whose progress fragment reruns every 2 s)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(tries):
        selectbox.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=3_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    pytest.fail(f"option {option!r} never showed in the selectbox")
