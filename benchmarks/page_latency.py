"""Page interaction latency on a built store: time from a widget change to the finished page run.

Uses Streamlit's AppTest, so it measures the server side of an interaction (script rerun with
the caches warm or cold) and not the browser's paint. Target: under 300 ms for cached views.

    python -m benchmarks.page_latency --store data/cache/tandem.duckdb [--modality xray|mri] [--repeats 7]

The first per-group metric the Fairness page offers is switched with TPR; the modality's own
default metric is the first of its run's group metrics. The failure-case workbench's rows open
the page a second time (the run's models are loaded by then), move its before/after slider and
step between two cases (the first step replays a case not seen yet: its max).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pages.ui.sidebar import KEPT, scoped
from recon_core import results
from recon_core.modalities import available_modalities
from recon_core.store import CLEAN, Store, queries

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def timed(action: Callable[[], AppTest]) -> float:
    start = time.perf_counter()
    at = action()
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    return (time.perf_counter() - start) * 1000


def alternate(first, second, repeats: int):
    """The values a widget flips between, one per repeat."""
    return iter([first, second] * repeats)


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    """Prints and returns (interaction, open-page ms, median ms, max ms) for each interaction."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--modality", default="xray", choices=available_modalities())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ["TANDEM_STORE"] = args.store
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/overview.py").run()
    at.selectbox(key="modality").set_value(args.modality).run()  # kept across pages from here on
    key = at.session_state[KEPT][scoped("run_key", args.modality)]  # the run chosen (its picker's key changes)
    cells = queries.cells(Store(args.store), key)
    cells = cells[cells.reconstructor != CLEAN]
    levels = sorted(cells.level.unique())
    recons = sorted(cells.reconstructor.unique())
    first = results.run_view(Store(args.store), key).group_metrics[0].metric
    metric = "fnr" if first == "tpr" else first
    rows = []

    def measure(name: str, page: str, change: Callable[[AppTest], AppTest]) -> None:
        at.switch_page(page)
        first = timed(at.run)  # opening the page (caches may be cold)
        times = [timed(lambda: change(at)) for _ in range(args.repeats)]
        rows.append((name, first, statistics.median(times), max(times)))

    values = alternate(levels[1], levels[-2], args.repeats)
    measure("Overview: change level", "pages/overview.py",
            lambda a: a.select_slider(key=scoped("level", key)).set_value(next(values)).run())
    chosen = alternate(recons[-1:], recons, args.repeats)
    measure("Overview: change reconstructors", "pages/overview.py",
            lambda a: a.multiselect(key=scoped("reconstructors", key)).set_value(next(chosen)).run())
    attributes = alternate("age_band", "sex", args.repeats)
    measure("Overview: change attribute", "pages/overview.py",
            lambda a: a.selectbox(key=scoped("attribute", key)).set_value(next(attributes)).run())
    metrics = alternate(metric, "tpr", args.repeats)
    measure("Fairness: change metric", "pages/fairness.py",
            lambda a: a.selectbox(key=scoped("fair_metric", key)).set_value(next(metrics)).run())
    groups = alternate("age_band", "sex", args.repeats)
    measure("Failure cases: change grouping", "pages/failures.py",
            lambda a: a.selectbox(key=scoped("attribute", key)).set_value(next(groups)).run())
    toggles = alternate(False, True, args.repeats)
    measure("Weak subgroups: one attribute", "pages/discovery.py",
            lambda a: a.toggle(key=scoped("disc_one_attribute", key)).set_value(next(toggles)).run())
    at.switch_page("pages/overview.py").run()  # away and back: the next row's open is a return to the page
    wipes = alternate(20, 80, args.repeats)
    measure("Failure cases: move before/after", "pages/failures.py",
            lambda a: a.slider(key="fail_wipe").set_value(next(wipes)).run())
    steps = alternate("fail_next", "fail_previous", args.repeats)  # the first step replays a new case
    measure("Failure cases: next/previous case", "pages/failures.py",
            lambda a: a.button(key=next(steps)).click().run())
    print(f"{'interaction':<34}{'open page ms':>14}{'median ms':>11}{'max ms':>9}   ({args.repeats} repeats)")
    for name, opening, median, worst in rows:
        print(f"{name:<34}{opening:>14.0f}{median:>11.0f}{worst:>9.0f}")
    return rows


if __name__ == "__main__":
    main()
