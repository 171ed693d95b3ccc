"""Patient subgroups: which rows belong to each value of a demographic attribute."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

OVERALL = ("all", "all")


class GroupError(ValueError):
    """An attribute that cannot define groups."""


def iter_groups(rows: pd.DataFrame, attributes: Sequence[str]) -> Iterator[tuple[str, str, np.ndarray]]:
    """(attribute, value, mask) for everyone, then each value of each attribute, sorted."""
    yield (*OVERALL, np.ones(len(rows), dtype=bool))
    for attribute in attributes:
        if attribute not in rows:
            raise GroupError(f"attribute {attribute!r} is not a column; available: {list(rows.columns)}")
        values = rows[attribute]
        if values.isna().any():
            raise GroupError(f"attribute {attribute!r} has rows with no value; assign every row a group")
        for value in sorted(values.astype(str).unique()):
            yield attribute, value, (values.astype(str) == value).to_numpy()
