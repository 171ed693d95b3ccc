"""What a chart says about itself once it leaves the dashboard or the report: the run it came from, how its
intervals are drawn and at what level, its file name and the PNG size it is saved at (no streamlit here).

A slide or a lab-meeting PNG travels without the page around it, so the figure must carry these itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from recon_core import plots
from recon_core.config import EvaluationConfig
from recon_core.results import RunView

DEFAULT_CI_LEVEL = EvaluationConfig().ci_level
"""The evaluation's interval level where a stored config does not say: the config's own default, read from it."""


def ci_level(config: Mapping | None) -> float:
    """The interval level of a run's stored config (`evaluation.ci_level`), its default where absent."""
    return float(((config or {}).get("evaluation") or {}).get("ci_level", DEFAULT_CI_LEVEL))


def run_text(run: RunView) -> str:
    """'run demo-xray · b09e4945': the run's name and the first 8 characters of its key (its config hash)."""
    return f"run {run.name} · {run.key[:8]}"


def note(run: RunView, builder: str, level: float) -> str:
    """The line under an exported chart's title: how its intervals are drawn, at which level and over which units
    (builders that draw none say nothing about them), then the run.

    The method is not named: a chart's intervals may be bootstrap, Wilson (a group's TPR/FPR) or DeLong (a
    finding's AUROC on an unclustered cohort), all at the run's level."""
    drawn = plots.INTERVALS.get(builder)
    intervals = f"{drawn}: {ci_text(level)} over {run.unit_text} · " if drawn else ""
    return intervals + run_text(run)


def ci_text(level: float) -> str:
    """'95 % CI': an interval level as titles and captions write it (0.9 → '90 % CI')."""
    return f"{level * 100:g} % CI"


def file_stem(run: RunView, name: str) -> str:
    """'tandem-b09e4945-psnr-vs-level': a chart's download name, the same for its PNG and its HTML."""
    return f"tandem-{run.key[:8]}-{name}"


def size_text(size: tuple[int, int, float]) -> str:
    """'PNG 1920×1080': the pixel size a (width, height, scale) export has."""
    width, height, scale = size
    return f"PNG {round(width * scale)}×{round(height * scale)}"


def png_options(stem: str, size: tuple[int, int, float]) -> dict:
    """Plotly's config for the camera button: a PNG of `size` named `stem` (saved in the browser, no server work)."""
    width, height, scale = size
    return {"toImageButtonOptions": {"format": "png", "filename": stem, "width": width, "height": height,
                                     "scale": scale}, "displaylogo": False}
