"""The DuckDB store: schema, idempotent writes, read queries."""

from recon_core.store.database import CLEAN, Store, StoreBusyError

__all__ = ["CLEAN", "Store", "StoreBusyError"]
