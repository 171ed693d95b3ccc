"""Which failure cases to look at first, how to step through them, and a case's scores on each road.

A classifier's case is an (image, finding) row of `fairness.flips.flip_table`; its badness is the
score change in the wrong direction (`wrong_way`): down for a present finding (towards missing
it), up for an absent one (towards inventing it). A segmenter's case is an image ranked by its
Dice drop instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def wrong_way(table: pd.DataFrame) -> pd.Series:
    """Per (image, finding): how far the score moved towards a wrong call (clean → reconstruction); negative
    where it moved towards the right one. A present finding (target 1) goes wrong downwards, an absent one up."""
    return table.change.where(table.target == 0, -table.change)


def worst_first(table: pd.DataFrame) -> pd.DataFrame:
    """Flip-table rows ordered by `wrong_way` (added as a column), largest first; ties by image and finding."""
    ranked = table.assign(wrong_way=wrong_way(table))
    return ranked.sort_values(["wrong_way", "image_id", "label"], ascending=[False, True, True],
                              kind="stable").reset_index(drop=True)


def step(ids: Sequence[str], current: str | None, by: int) -> str:
    """The case `by` places after `current` in `ids` (before it when negative), wrapping round the ends;
    the first case where `current` is not among them."""
    if not ids:
        raise ValueError("no case to step to")
    if current not in ids:
        return ids[0]
    return ids[(list(ids).index(current) + by) % len(ids)]


def with_sample_range(scores: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """A case's scores on each road (`replay.scores_table`: finding, clean, reconstructed) with, for a sampler, the
    lowest and highest score its posterior samples got (`samples`: the case's rows of `queries.sample_scores`)."""
    if samples.empty:
        return scores
    spread = samples.groupby("name").value.agg(["min", "max", "count"])
    return scores.assign(**{"samples' lowest": scores.finding.map(spread["min"]),
                            "samples' highest": scores.finding.map(spread["max"]),
                            "samples": scores.finding.map(spread["count"]).astype("Int64")})
