"""The run's pre-specified test families and their Benjamini–Hochberg q-values.

Every p-value Tandem stores belongs to exactly one family, fixed before any result is seen
(by the modality's primary test) and corrected once, when the run is complete:

- **primary**: the modality's headline question: did reconstruction change the signed group
  difference of its headline metric (X-ray: TPR, per finding; MRI: tumour Dice)? One test per
  finding × contrast × reconstructor × level.
- **secondary**: every other change of a signed difference (AUROC, FPR, PPV, selection rate,
  average odds difference, label means of the headline).
- **inherent**: signed differences on the clean images: the bias the diagnostic model already has.
- **task**: the change of each overall task metric (reconstructed − clean), everyone together.
- **mitigation**: a mitigation variant against its base on the same units (`fairness.mitigation`):
  the change of the primary signed difference, per finding × contrast × variant × level.
- **mitigation cost**: the same variants' change of the headline task metric and of PSNR/SSIM
  for everyone (what a strategy costs or gains).

No hypothesis is counted twice: FNR is −TPR and the folded max − min gaps are descriptive, so
neither is tested. A statistic that did not vary in any resample (e.g. a TPR of 1 in every group
on both roads: interval [0, 0], p = 1) can never be significant and is left out of its family
(Tarone's rule for tests that cannot reject), so it does not dilute the others; on the X-ray demo
that is about one primary test in six. p-values are bootstrap-normal (`bootstrap.normal_test`), so a family of
hundreds of tests can reach significance with 1,000 resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control


@dataclass(frozen=True)
class Family:
    """One family of tests: its name (stored with each test) and what it asks."""

    name: str
    question: str


FAMILIES = (
    Family("primary", "did reconstruction change the signed group difference of the headline metric "
                      "(per finding, contrast, reconstructor and level)?"),
    Family("secondary", "did reconstruction change any other signed group difference?"),
    Family("inherent", "does the diagnostic model already differ between groups on clean images?"),
    Family("task", "did reconstruction change the task metric for everyone?"),
    Family("mitigation", "did a mitigation variant change the headline signed group difference against its base "
                         "(per finding, contrast, variant and level; the change in added bias)?"),
    Family("mitigation cost", "did a mitigation variant change image quality (PSNR, SSIM) or the headline task "
                              "metric for everyone against its base?"),
)
BY_NAME = {f.name: f for f in FAMILIES}


def family_of(metric: str, label: str, attribute: str, road_is_clean: bool, primary: str) -> str | None:
    """The family a stored test belongs to (None: not a test of any family).

    `primary` is the modality's headline test metric, e.g. 'tpr_diff_added'; its label mean is secondary.
    """
    if metric == primary and label != "mean":
        return "primary"
    if metric.endswith("_diff_added"):
        return "secondary"
    if metric.endswith("_diff"):
        return "inherent" if road_is_clean else None
    if metric.endswith("_added") and attribute == "all":
        return "task"
    return None


def q_values(tests: pd.DataFrame, primary: str, clean: str) -> pd.DataFrame:
    """`tests` (reconstructor, metric, label, attribute, ci_low, ci_high, p_value, …) with `family` and its
    BH `q_value`.

    Rows of no family, without a p-value, or whose interval has no width (nothing varied: it cannot
    reject) get no family and no q-value and do not count in a family's size.
    """
    degenerate = (tests.ci_low == tests.ci_high).to_numpy() if "ci_low" in tests else np.zeros(len(tests), bool)
    family = [None if flat else family_of(m, lb, a, r == clean, primary)
              for m, lb, a, r, flat in zip(tests.metric, tests.label, tests.attribute, tests.reconstructor, degenerate,
                                           strict=True)]
    return _corrected(tests, family)


def mitigation_family(metric: str, label: str, attribute: str, primary: str, costs: tuple[str, ...]) -> str | None:
    """The family of a mitigation effect (`<m>_change`, variant − base): the primary difference's change per finding,
    or the change for everyone of a cost metric (`costs`: the headline task and quality metrics); else None."""
    if metric == primary.removesuffix("_added") + "_change" and label != "mean":
        return "mitigation"
    if attribute == "all" and metric.removesuffix("_change") in costs and label != "mean":
        return "mitigation cost"
    return None


def mitigation_q_values(effects: pd.DataFrame, primary: str, costs: tuple[str, ...]) -> pd.DataFrame:
    """`effects` (variant × level rows of `fairness.mitigation.compare_to_base`) with `family` and its BH `q_value`,
    degenerate intervals left out as in `q_values`."""
    degenerate = (effects.ci_low == effects.ci_high).to_numpy()
    family = [None if flat or pd.isna(p) else mitigation_family(m, lb, a, primary, costs)
              for m, lb, a, p, flat in zip(effects.metric, effects.label, effects.attribute, effects.p_value,
                                           degenerate, strict=True)]
    return _corrected(effects, family)


def _corrected(tests: pd.DataFrame, family: list[str | None]) -> pd.DataFrame:
    """`tests` with each row's family and, within each family, the Benjamini–Hochberg q-value of its p-value."""
    out = tests.assign(family=pd.Series(family, index=tests.index, dtype=object), q_value=np.nan)
    for _, members in out[out.family.notna()].groupby("family"):
        known = members["p_value"].dropna()
        if len(known):
            out.loc[known.index, "q_value"] = false_discovery_control(known.to_numpy(), method="bh")
    return out
