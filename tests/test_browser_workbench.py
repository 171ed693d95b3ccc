"""Browser test of the failure-case workbench (issue 18): open Failure cases, open a case from the worst-cases grid,
move the before/after slider, change the attribution opacity, press the next-case key — each drawn picture (its
image's src, which names its bytes) or the case shown must change."""

from __future__ import annotations

from tests.browser_support import BROWSER, OUT, settled

pytestmark = BROWSER


def picture_src(page, caption: str) -> str:
    """The src of the workbench picture whose caption starts with `caption`."""
    image = page.locator('[data-testid="stImage"]').filter(has_text=caption).locator("img")
    image.first.wait_for(timeout=60_000)
    return image.first.get_attribute("src")


def redrawn(page, caption: str, src: str) -> None:
    """Waits until the picture captioned `caption` shows other bytes than `src` (a slider's redraw)."""
    page.wait_for_function("([c, s]) => [...document.querySelectorAll('[data-testid=\"stImage\"]')]"
                           ".some(e => e.innerText.startsWith(c) && e.querySelector('img').src !== s)",
                           arg=[caption, src], timeout=30_000)


def case_shown(page) -> str:
    """The case picker's value: the case on show."""
    return page.get_by_role("combobox", name="Case", exact=True).input_value()


def press_slider(page, label: str, direction: str, times: int) -> None:
    """Moves the slider labelled `label` by `times` steps with the keyboard, then waits for the page to settle."""
    thumb = page.locator(f'input[type="range"][aria-label="{label}"]')
    thumb.scroll_into_view_if_needed()
    thumb.focus()
    for _ in range(times):
        thumb.press(direction)
    settled(page)


def test_workbench_opens_a_case_moves_the_wipe_changes_the_opacity_and_steps_by_key(server, page):
    page.goto(f"{server}/failures")
    page.get_by_text("Why did the decision change?").wait_for(timeout=120_000)
    settled(page)
    page.get_by_text("Only lost or invented findings").click()  # every case, so the grid is never empty
    settled(page)
    grid = page.locator(".st-key-fail_open_1 button")
    grid.scroll_into_view_if_needed()
    opened = grid.inner_text().split(" · ")[0]
    grid.click()
    settled(page)
    assert case_shown(page).startswith(opened), (case_shown(page), opened)

    wipe = picture_src(page, "clean ← | →")
    press_slider(page, "Before / after: reconstruction shown", "ArrowRight", 4)  # 50 % → 70 % reconstructed
    redrawn(page, "clean ← | →", wipe)
    assert picture_src(page, "clean ← | →") != wipe

    overlay = picture_src(page, "Integrated Gradients on clean")
    press_slider(page, "Attribution opacity", "ArrowLeft", 6)  # 60 % → 30 % opacity
    redrawn(page, "Integrated Gradients on clean", overlay)
    assert picture_src(page, "Integrated Gradients on clean") != overlay
    page.screenshot(path=str(OUT / "failure-workbench.png"), full_page=True)

    before = case_shown(page)
    page.locator("h1").first.click()  # the focus off the slider: its arrow keys are its own
    page.keyboard.press("j")  # next case
    settled(page)
    page.wait_for_function("b => document.querySelector('input[aria-label=\"Case\"]').value !== b", arg=before,
                           timeout=60_000)
    assert case_shown(page) != before
    assert page.locator('[data-testid="stException"]').count() == 0
