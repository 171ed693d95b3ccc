"""The dashboard reads snapshots: a sweep writes while a reader reads, and a reader sees one version throughout."""

from __future__ import annotations

import time

from recon_core.store import Store, queries
from recon_core.store.snapshot import KEEP, snapshot


def cells(store: Store) -> int:
    return int(store.query("SELECT count(*) AS n FROM cells").n.iloc[0])


def test_a_snapshot_holds_one_version_and_never_blocks_the_writer(built_store, tmp_path):
    import shutil

    store, key, _ = built_store
    path = tmp_path / "tandem.duckdb"
    shutil.copy(store.path, path)
    live = Store(path, timeout=2.0)
    first = snapshot(live, tmp_path / "snapshots")
    assert first.path != live.path and snapshot(live, tmp_path / "snapshots").path == first.path  # once a version
    before = cells(first)
    # a reader busy on the snapshot, and the writer is not held up
    with first.connect(read_only=True), live.connect() as con:
        con.execute("INSERT INTO cells SELECT * REPLACE ('extra' AS reconstructor) FROM cells "
                    "WHERE config_hash = ? LIMIT 1", [key])
    assert cells(first) == before  # the snapshot keeps its version
    second = snapshot(live, tmp_path / "snapshots")
    assert second.path != first.path and cells(second) == before + 1
    assert len(queries.runs(second)) == len(queries.runs(live))


def test_old_snapshots_are_pruned(tmp_path):
    live = Store(tmp_path / "s.duckdb")
    for i in range(KEEP + 3):
        with live.connect() as con:
            con.execute("INSERT INTO meta VALUES (?, 'x') ON CONFLICT DO NOTHING", [f"k{i}"])
        snapshot(live, tmp_path / "snapshots")
        time.sleep(0.01)
    assert len(list((tmp_path / "snapshots").glob("*.duckdb"))) == KEEP
    assert not list((tmp_path / "snapshots").glob("*.partial"))
