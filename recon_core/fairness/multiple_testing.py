"""Benjamini–Hochberg q-values across the many 'added by reconstruction' tests of a run."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control


def q_values(tests: pd.DataFrame) -> pd.Series:
    """BH-adjusted p-values, one family per metric (across reconstructor × level × attribute × label × group).

    Rows without a p-value (NaN: nothing to test) get NaN and do not count in the family size.
    """
    q = pd.Series(np.nan, index=tests.index, name="q_value")
    for _, family in tests.groupby("metric"):
        known = family["p_value"].dropna()
        if len(known):
            q[known.index] = false_discovery_control(known.to_numpy(), method="bh")
    return q
