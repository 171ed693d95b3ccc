"""Builds started from the dashboard: a CLI run as a process of its own, watched through its progress file.

The dashboard must stay responsive while a study trains and sweeps, so a build is
`python -m recon_core <command>` in a new session, writing its progress to a JSON file that
any page polls. Kept here (not in the pages) so it is tested without Streamlit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from recon_core.progress import read_progress, write_progress

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuildProgress:
    """Where a running build stands: its stage and how far it is through it."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        """Share of the stage done, in [0, 1]."""
        return min(self.done / max(self.total, 1), 1.0)

    def text(self, verb: str = "Building") -> str:
        """'Building: training unet (120/600)'."""
        return f"{verb}: {self.stage} ({self.done}/{self.total})"


def running_build(progress_path: Path) -> BuildProgress | None:
    """The progress of the build that writes `progress_path`, while its process lives; None otherwise."""
    progress = read_progress(progress_path)
    if not progress or progress.get("stage") == "done":
        return None
    try:
        pid = int(progress["pid"])
    except (KeyError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child has ended (a zombie still answers kill 0)
            return None
    except ChildProcessError:
        pass  # started by another process (`make demo`, an earlier server): ask the kernel below
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return BuildProgress(str(progress.get("stage", "")), int(progress.get("done", 0)), int(progress.get("total", 1)))


def start_build(command: str, store_path: Path, progress_path: Path, log_path: Path,
                config: Path | None = None, executor: str = "local", ray_address: str | None = None) -> int:
    """Starts `python -m recon_core <command>` as its own process and returns its pid.

    Progress is recorded at once with the child's pid, so the next look already sees the build
    (no second start); its output goes to `log_path`. `executor="ray"` runs its cells on the Ray
    cluster at `ray_address` (None: a local Ray).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "recon_core", command, "--store", str(store_path), "--progress-file",
            str(progress_path)]
    if config is not None:
        args += ["--config", str(config)]
    if executor != "local":
        args += ["--executor", executor, *(["--ray-address", ray_address] if ray_address else [])]
    with open(log_path, "w") as out:
        child = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    write_progress(progress_path, "starting", 0, 1, pid=child.pid)
    return child.pid


def failed_log(log_path: Path) -> str | None:
    """The end of the last build's log when it ended in an error, else None."""
    if not log_path.exists():
        return None
    text = log_path.read_text(errors="replace")
    return text[-4000:] if "error" in text[-2000:].lower() else None
