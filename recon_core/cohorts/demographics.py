"""Parses and checks demographic columns; a column that collapses to one value is an error."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd

SEX_WORDS = {"male": "M", "m": "M", "female": "F", "f": "F"}


class CohortError(ValueError):
    """Bad cohort input: names the file, column or value."""


def parse_sex(values: pd.Series, source: str, column: str,
              codes: dict[str, str] | None = None) -> pd.Series:
    """Maps sex values to 'M'/'F'.

    Accepted: Male/Female and M/F in any case; numeric codes (0/1) only through an explicit
    `codes` mapping such as {"0": "M", "1": "F"}. Anything else is an error naming the value
    and its row. The reference code parsed sex to a constant; `require_varied` guards that.
    """
    if codes is not None:
        bad = {k: v for k, v in codes.items() if v not in ("M", "F")}
        if bad:
            raise CohortError(f"{source}: sex_codes {bad} must map to 'M' or 'F'")
    missing = values.isna()
    if missing.any():
        raise CohortError(f"{source}: column {column!r} row {values.index[missing.to_numpy()][0]}: missing sex value")
    # pandas reads integer codes with gaps as floats: "1.0" means code "1"
    text = values.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    parsed = text.str.lower().map(SEX_WORDS)
    if codes is not None:
        parsed = text.map(codes).fillna(parsed)
    bad = parsed.isna()
    if bad.any():
        row = values.index[bad.to_numpy()][0]
        hint = " (numeric codes need a declared sex_codes mapping)" if text[row].isdigit() else ""
        raw = values.astype(object)[row]  # the value as written, not a numpy scalar
        raise CohortError(f"{source}: column {column!r} row {row}: unknown sex value {raw!r}{hint}")
    return parsed.rename("sex")


def parse_age(values: pd.Series, source: str, column: str) -> pd.Series:
    """Ages in years as floats; a missing, non-numeric or out-of-range age is an error."""
    ages = pd.to_numeric(values, errors="coerce")
    bad = ages.isna() | (ages < 0) | (ages > 130)
    if bad.any():
        row = values.index[bad.to_numpy()][0]
        raise CohortError(f"{source}: column {column!r} row {row}: invalid age {values[row]!r}")
    return ages.astype(float).rename("age")


def age_band(ages: pd.Series | np.ndarray, edges: Sequence[float]) -> pd.Series:
    """Age bands from sorted edges: (60,) → '<60', '60+'; (40, 65) → '<40', '40-64', '65+'."""
    edges = list(edges)
    if edges != sorted(edges) or len(set(edges)) != len(edges):
        raise CohortError(f"age_band_edges {edges} must be strictly increasing")
    names = [f"<{edges[0]:g}"] + [f"{a:g}-{b - 1:g}" for a, b in pairwise(edges)] + [f"{edges[-1]:g}+"]
    idx = np.searchsorted(np.asarray(edges, float), np.asarray(ages, float), side="right")
    return pd.Series(np.asarray(names, dtype=object)[idx], name="age_band")


def require_varied(table: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Stops if a demographic column holds a single value (the reference code's silent bug)."""
    for column in columns:
        values = table[column].dropna().unique()
        if len(values) < 2:
            raise CohortError(
                f"{source}: demographic column {column!r} has a single value {list(values)}; "
                "fairness by this attribute is impossible — check the column and its parsing")
