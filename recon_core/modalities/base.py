"""A modality as an object: its physics and cohort sources, task models, statistical unit and headline metrics.

Code asks the modality instead of branching on its name. What the dashboard, the report and
the CLI need to draw a run (level axis and direction, headline curves, group and gap metrics,
the unit of statistics) is `describe()`d and stored with the run, so reading a run never needs
the modality's code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import pandas as pd
import torch

from recon_core.cohorts.base import CohortSource
from recon_core.config import ConfigError, StudyConfig
from recon_core.diagnostics.task import TaskModel
from recon_core.physics.base import Acquisition, LevelAxis
from recon_core.reconstructors.registry import REGISTRY


@dataclass(frozen=True)
class Headline:
    """A stored aggregate a modality leads with: metric, label ('' per image, 'mean' over labels), title, axis."""

    metric: str
    label: str
    title: str
    axis: str


class Modality(ABC):
    """One imaging modality of Tandem. Subclasses fill in the class attributes and the three builders."""

    name: ClassVar[str]
    """Stored with every run; what `modality:` in a config says."""
    title: ClassVar[str]
    physics: ClassVar[dict[str, Callable[[StudyConfig], Acquisition]]]
    """physics.model → builder of the acquisition object."""
    sources: ClassVar[dict[str, Callable[[StudyConfig], CohortSource]]]
    """cohort.source → builder of the cohort source ('synthetic' first)."""
    anatomies: ClassVar[tuple[str, ...]]
    synthetic_labels: ClassVar[tuple[str, ...]]
    unit: ClassVar[str]
    """The statistical unit: 'image', or 'patient' (a patient's slices pooled into one row before any statistic)."""
    unit_text: ClassVar[str]
    curves: ClassVar[tuple[Headline, ...]]
    """Quality first, then the task: the curves against the level."""
    table_metrics: ClassVar[tuple[Headline, ...]]
    """Further per-cell columns of the headline tables (CLI and report), e.g. MRI's per-volume PSNR."""
    group_metrics: ClassVar[tuple[Headline, ...]]
    """Per-group task metrics shown by subgroup."""
    gap_metrics: ClassVar[tuple[Headline, ...]]
    """Fairness gaps, the first one the default."""
    added_metrics: ClassVar[tuple[str, ...]]
    """'Added by reconstruction' metrics of the headline tables (signed changes first)."""
    primary_test: ClassVar[str]
    """The headline test: its per-label (or per-image metric's) rows form the run's primary family."""
    lesion_finding: ClassVar[str | None] = None
    """The finding whose classifier call is the diagnostic model's detector of a known lesion (the hallucination
    check); None where the segmenter's call at the site is (`lesion_called`)."""
    fairness_model: ClassVar[str] = "classifier"
    """The frozen task model (by name) whose answers the mitigation strategies' fairness terms go through."""
    correlated_quality: ClassVar[tuple[str, ...]] = ("psnr", "ssim")
    """Image-quality metrics whose ranking of the cells is set against the headline tasks' (run finalisation)."""

    def validate(self, config: StudyConfig) -> None:
        """The config's physics model, levels, cohort source, anatomy and labels fit the modality (else ConfigError)."""
        if config.physics.model not in self.physics:
            raise ConfigError(f"physics.model: {config.physics.model!r} does not fit modality {self.name!r}; "
                              f"use one of {list(self.physics)}")
        axis = self.axis(config)
        for level in config.physics.levels:
            problem = axis.problem(level)
            if problem:
                raise ConfigError(f"physics.levels: {axis.name} level {level!r} {problem}")
        if config.cohort.source not in self.sources:
            raise ConfigError(f"cohort.source: {config.cohort.source!r} is not a {self.name} source; "
                              f"use one of {list(self.sources)}")
        if config.cohort.source == "synthetic":
            if config.cohort.anatomy not in self.anatomies:
                raise ConfigError(f"cohort.anatomy: {config.cohort.anatomy!r} is not a {self.name} anatomy; "
                                  f"use one of {list(self.anatomies)}")
            unknown = [label for label in config.cohort.prevalence if label not in self.synthetic_labels]
            if unknown:
                raise ConfigError(f"cohort.prevalence: unknown {self.name} label {unknown[0]!r}; "
                                  f"known: {list(self.synthetic_labels)}")
        self.validate_source(config)

    def validate_source(self, config: StudyConfig) -> None:  # noqa: B027 (modalities with real-data sources check them)
        """Checks of the real-data source's own settings."""

    def axis(self, config: StudyConfig) -> LevelAxis:
        """What the config's levels mean (from its physics model)."""
        return self.build_physics(config).axis

    def build_physics(self, config: StudyConfig) -> Acquisition:
        """The acquisition the config describes."""
        return self.physics[config.physics.model](config)

    def cohort_source(self, config: StudyConfig) -> CohortSource:
        """Where the config's images come from."""
        return self.sources[config.cohort.source](config)

    @abstractmethod
    def task_models(self, config: StudyConfig, labels: tuple[str, ...], device: torch.device) -> list[TaskModel]:
        """The diagnostic models in tandem, the labelled classifier first; untrained until fit or loaded."""

    def unit_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows statistics are computed on (images; patients pool their slices)."""
        return rows

    def describe(self, config: StudyConfig) -> dict:
        """What is stored with each run so that pages, report and CLI can draw it without this code.

        Also names the run's reconstructors whose output is the degraded image (shown once, not twice).
        """
        axis = self.axis(config)
        known = [name for name in config.reconstructors.names if name in REGISTRY.names()]
        return {"returns_degraded": [name for name in known if REGISTRY.load(name).returns_degraded],
                "reconstructors": list(config.reconstructors.names),
                "modality": self.name, "title": self.title, "unit": self.unit, "unit_text": self.unit_text,
                "level": asdict(axis), "curves": [asdict(h) for h in self.curves],
                "table_metrics": [asdict(h) for h in self.table_metrics],
                "group_metrics": [asdict(h) for h in self.group_metrics],
                "gap_metrics": [asdict(h) for h in self.gap_metrics], "added_metrics": list(self.added_metrics),
                "primary_test": self.primary_test}
