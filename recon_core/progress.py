"""One progress callback type for long work; the CLI shows a bar, the dashboard st.progress."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances."""


def silent(stage: str, done: int, total: int) -> None:
    """A progress callback that reports nothing."""


def write_progress(path: str | Path, stage: str, done: int, total: int, pid: int | None = None) -> None:
    """Atomically records (stage, done, total) and the working process's pid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stage": stage, "done": done, "total": total, "time": time.time(),
                               "pid": os.getpid() if pid is None else pid}))
    tmp.replace(path)


def file_reporter(path: str | Path, also: Progress | None = None) -> Progress:
    """Writes the latest (stage, done, total) to a JSON file another process can poll."""

    def report(stage: str, done: int, total: int) -> None:
        write_progress(path, stage, done, total)
        if also is not None:
            also(stage, done, total)

    return report


def read_progress(path: str | Path) -> dict | None:
    """The last progress a file reporter wrote, or None if there is none."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
