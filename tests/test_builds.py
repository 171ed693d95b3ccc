"""Builds started from the dashboard, without Streamlit: a real child process, watched through its progress file."""

from __future__ import annotations

import time

from recon_core import builds


def test_a_build_is_seen_while_it_runs_and_its_failure_is_kept(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("physics: {levels: [0]}\n")
    progress, log = tmp_path / "progress.json", tmp_path / "build.log"
    pid = builds.start_build("sweep", tmp_path / "s.duckdb", progress, log, config=bad)
    seen = builds.running_build(progress)
    assert seen is not None and seen.stage == "starting" and 0.0 <= seen.fraction <= 1.0  # seen at once
    assert seen.text().startswith("Building: starting")
    deadline = time.monotonic() + 120
    while builds.running_build(progress) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert builds.running_build(progress) is None and pid > 0  # the ended child is no longer a build
    failure = builds.failed_log(log)
    assert failure is not None and "dose level 0" in failure


def test_no_progress_file_means_no_build(tmp_path):
    assert builds.running_build(tmp_path / "none.json") is None
    assert builds.failed_log(tmp_path / "none.log") is None
    assert builds.BuildProgress("training unet", 30, 0).fraction == 1.0  # a zero total never divides


def test_a_build_on_ray_passes_the_executor_and_its_address(tmp_path, monkeypatch):
    """The Run page's executor choice reaches the CLI; a local build's command line is as before."""
    started: list[list[str]] = []

    class Child:
        pid = 1

    monkeypatch.setattr(builds.subprocess, "Popen", lambda args, **kwargs: started.append(args) or Child())
    paths = (tmp_path / "s.duckdb", tmp_path / "progress.json", tmp_path / "build.log")
    builds.start_build("sweep", *paths, executor="ray", ray_address="head:6379")
    builds.start_build("sweep", *paths, executor="ray")
    builds.start_build("sweep", *paths)
    assert started[0][-4:] == ["--executor", "ray", "--ray-address", "head:6379"]
    assert started[1][-2:] == ["--executor", "ray"]
    assert "--executor" not in started[2]
