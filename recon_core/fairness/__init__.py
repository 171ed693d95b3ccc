"""Fairness statistics: groups, per-group metrics, gaps and bootstrap intervals from stored rows."""

from recon_core.fairness.groups import GroupError, iter_groups
from recon_core.fairness.summary import summarise_cell

__all__ = ["GroupError", "iter_groups", "summarise_cell"]
