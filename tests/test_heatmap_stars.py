"""The Fairness heat map's stars: drawn exactly where the stored q-value is below the level, on real store rows."""

from __future__ import annotations

import numpy as np
import pytest

from recon_core import plots
from recon_core.store import CLEAN, queries


def starred(figure) -> dict[tuple[str, str], bool]:
    """{(reconstructor, level as shown): whether the cell's text carries ★} of an `added_heatmap` figure."""
    heat = figure.data[0]
    return {(str(recon), str(level)): "★" in heat.text[i][j]
            for i, recon in enumerate(heat.y) for j, level in enumerate(heat.x)}


def grids(store, key):
    """Every heat map the Fairness page can draw from a signed change: one per finding × attribute × contrast."""
    agg = queries.aggregates(store, key)
    signed = agg[agg.metric.str.endswith("_diff_added") & (agg.reconstructor != CLEAN) & (agg.attribute != "all")]
    return [grid for _, grid in signed.groupby(["metric", "label", "attribute", "grp"])]


@pytest.mark.parametrize("store_fixture", ["built_store", "mri_store"])
def test_a_star_is_drawn_exactly_where_the_stored_q_is_below_the_level(store_fixture, request):
    store, key, _ = request.getfixturevalue(store_fixture)
    both = 0
    for grid in grids(store, key):
        q = grid.q_value.dropna().sort_values().unique()
        # the page's 5 % and, where the grid's q-values differ, a level between two of them: some cells starred,
        # some not, so a star in the wrong cell (or none where one belongs) is caught on any store
        levels = [0.05, *([float(q[:2].mean())] if len(q) > 1 else [])]
        for alpha in levels:
            shown = starred(plots.added_heatmap(grid, "t", alpha=alpha))
            expected = {(str(r), f"{lv:g}") for r, lv, qq in
                        zip(grid.reconstructor, grid.level, grid.q_value.fillna(np.inf), strict=True) if qq < alpha}
            stars = {cell for cell, star in shown.items() if star}
            assert stars == expected, (grid.iloc[0][["metric", "label", "attribute", "grp"]].tolist(), alpha)
            both += 0 < len(stars) < len(shown)
    assert both > 0  # some grid had starred and unstarred cells side by side
