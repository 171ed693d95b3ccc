"""Patient subgroups: which rows belong to each value of a demographic attribute or intersection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

OVERALL = ("all", "all")
JOIN = "×"
"""An intersection of attributes is written 'sex×age_band'; its groups read 'F & <60'."""


class GroupError(ValueError):
    """An attribute that cannot define groups."""


def attribute_values(rows: pd.DataFrame, attribute: str) -> pd.Series:
    """Each row's group under an attribute (or an intersection 'a×b'), as strings."""
    parts = attribute.split(JOIN)
    missing = [p for p in parts if p not in rows]
    if missing:
        raise GroupError(f"attribute {missing[0]!r} is not a column; available: {list(rows.columns)}")
    for part in parts:
        if rows[part].isna().any():
            raise GroupError(f"attribute {part!r} has rows with no value; assign every row a group")
    values = rows[parts[0]].astype(str)
    for part in parts[1:]:
        values = values + " & " + rows[part].astype(str)
    return values


def iter_groups(rows: pd.DataFrame, attributes: Sequence[str]) -> Iterator[tuple[str, str, np.ndarray]]:
    """(attribute, value, mask) for everyone, then each value of each attribute, sorted."""
    yield (*OVERALL, np.ones(len(rows), dtype=bool))
    for attribute in attributes:
        values = attribute_values(rows, attribute)
        for value in sorted(values.unique()):
            yield attribute, value, (values == value).to_numpy()
