"""Fairness statistics: groups, per-group metrics, signed differences, gaps and bootstrap intervals from stored rows."""

from recon_core.fairness.groups import GroupError, iter_groups
from recon_core.fairness.summary import summarise_cell

STATISTICS_VERSION = 2
"""Bump when stored aggregates change meaning: a run summarised by an older version is re-summarised
from its stored rows when it is run again (its cells are not re-run). 2: signed differences lead,
stated test families, stratified (cluster) bootstrap, minimum positives and negatives per group."""

__all__ = ["STATISTICS_VERSION", "GroupError", "iter_groups", "summarise_cell"]
