"""Read-only snapshots of a store, for readers that must neither hold a writer up nor see half of its writes.

DuckDB lets one process write a file while no other process has it open; every reader's
connection, however short, makes a sweep wait. The dashboard therefore reads a copy of the store
made once per store version: the copy is taken while a read-only connection holds DuckDB's
shared lock (so no write is half-done in it), and afterwards the dashboard's many reads touch
only the copy. A sweep waits for one file copy per landed cell instead of for every read of every
page, and all reads of one page run come from one consistent copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

from recon_core.store.database import Store

KEEP = 4
"""Snapshots kept per folder (the newest); older ones are removed (a reader still holding one keeps its file open)."""


def snapshot(store: Store, folder: Path) -> Store:
    """The store as of now, copied into `folder` once per version; the store itself when it has no file yet."""
    if not store.exists():
        return store
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{store.path.resolve()}|{store.version()}".encode()).hexdigest()[:16]
    target = folder / f"{name}.duckdb"
    if not target.exists():
        partial = folder / f"{name}.{os.getpid()}.{threading.get_ident()}.partial"  # sessions are threads
        wal = store.path.with_name(store.path.name + ".wal")
        with store.connect(read_only=True):  # DuckDB's shared lock: no writer commits while the file is copied
            shutil.copyfile(store.path, partial)
            if wal.exists():  # left by a writer that stopped before its checkpoint
                shutil.copyfile(wal, target.with_name(target.name + ".wal"))
        os.replace(partial, target)
        _prune(folder)
    return Store(target, timeout=store.timeout)


def _prune(folder: Path) -> None:
    """Removes all but the newest `KEEP` snapshots of a folder."""
    copies = sorted(folder.glob("*.duckdb"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in copies[KEEP:]:
        for file in (old, old.with_name(old.name + ".wal")):
            file.unlink(missing_ok=True)
