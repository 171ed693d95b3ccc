"""The DuckDB store: schema, idempotent writes, read queries."""

from recon_core.store.database import CLEAN, Store, StoreBusyError, StoreError

__all__ = ["CLEAN", "Store", "StoreBusyError", "StoreError"]
