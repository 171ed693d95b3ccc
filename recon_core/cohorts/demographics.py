"""Parses and checks demographic columns; a column that collapses to one value is an error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")
SEX_WORDS = {"male": "M", "m": "M", "female": "F", "f": "F"}


class CohortError(ValueError):
    """Bad cohort input: names the file, column or value."""


FIRST_ROW = 2
"""A table's first data row as a spreadsheet numbers it (the header is row 1): the row a user looks for."""
SHOWN = 5
"""How many offending rows (or problems) a message lists before saying how many more there are."""


def bad_rows(values: pd.Series, bad: pd.Series, what: str) -> str:
    """'unknown sex value in 3 rows: row 4 'x', row 7 '', row 9 'nan'' — rows as a spreadsheet numbers them.

    Values are shown as written: an empty cell as '' and the text "nan" as 'nan' (read the file
    with `dtype=str`); a missing value read as NaN shows as 'empty'.
    """
    rows = values.index[bad.to_numpy()]
    listed = ", ".join(f"row {i + FIRST_ROW} " + ("empty" if pd.isna(values[i]) else repr(str(values[i])))
                       for i in rows[:SHOWN])
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return f"{what} in {len(rows)} row(s): {listed}{more}"


class Problems:
    """Collects every problem of a table, so a user fixes a dataset in one round instead of one per problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[str] = []

    def run(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`check(*args)`'s result, or None with its CohortError noted (its 'source: ' prefix dropped)."""
        try:
            return check(*args, **kwargs)
        except CohortError as exc:
            self.found.append(str(exc).removeprefix(f"{self.source}: "))
            return None

    def raise_if_any(self) -> None:
        """One CohortError listing every problem found (the first few in full, then a count)."""
        if not self.found:
            return
        if len(self.found) == 1:
            raise CohortError(f"{self.source}: {self.found[0]}")
        listed = "\n".join(f"  - {p}" for p in self.found[:SHOWN])
        more = f"\n  … and {len(self.found) - SHOWN} more" if len(self.found) > SHOWN else ""
        raise CohortError(f"{self.source}: {len(self.found)} problems:\n{listed}{more}")


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
    # pandas reads integer codes with gaps as floats: "1.0" means code "1"
    text = values.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    parsed = text.str.lower().map(SEX_WORDS).where(values.notna())
    if codes is not None:
        parsed = text.map(codes).fillna(parsed).where(values.notna())
    bad = parsed.isna()
    if bad.any():
        digits = text[bad & values.notna()].str.isdigit().any()
        hint = " (numeric codes need a declared sex_codes mapping)" if digits else ""
        raise CohortError(f"{source}: column {column!r}: {bad_rows(values, bad, 'unknown or missing sex value')}"
                          f"{hint}")
    return parsed.rename("sex")


def parse_age(values: pd.Series, source: str, column: str) -> pd.Series:
    """Ages in years as floats; a missing, non-numeric or out-of-range age is an error."""
    ages = pd.to_numeric(values, errors="coerce")
    bad = ages.isna() | (ages < 0) | (ages > 130)
    if bad.any():
        raise CohortError(f"{source}: column {column!r}: {bad_rows(values, bad, 'missing or invalid age (0–130)')}")
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
