"""The DuckDB store: schema, and short-lived connections that retry while another process holds the file.

DuckDB lets one process hold a file for writing and refuses every other process meanwhile,
read-only ones included. Writers here hold it only for one cell's batch of inserts and
readers only for one query, and both retry on the lock, so `make demo` and the dashboard
share one store.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from recon_core.metrics.catalogue import IMAGE_COLUMNS

SCHEMA_VERSION = 1

if not all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in IMAGE_COLUMNS):  # identifiers in DDL below
    raise ValueError(f"metric catalogue: per-image metric names must be lower-case identifiers, got {IMAGE_COLUMNS}")

CORRELATIONS = """CREATE TABLE IF NOT EXISTS {name} (
        config_hash VARCHAR, scope VARCHAR, x_metric VARCHAR, y_metric VARCHAR, attribute VARCHAR, estimate DOUBLE,
        ci_low DOUBLE, ci_high DOUBLE, n_cells INTEGER,
        PRIMARY KEY (config_hash, scope, x_metric, y_metric, attribute))"""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS runs (
        config_hash VARCHAR PRIMARY KEY, name VARCHAR, modality VARCHAR, config_json VARCHAR,
        level_name VARCHAR, level_unit VARCHAR, status VARCHAR,
        created_at TIMESTAMP, updated_at TIMESTAMP, seconds DOUBLE, message VARCHAR)""",
    # what the modality says about drawing the run (level axis and direction, headline metrics, unit)
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS description_json VARCHAR",
    """CREATE TABLE IF NOT EXISTS cells (
        config_hash VARCHAR, reconstructor VARCHAR, level DOUBLE, status VARCHAR, n_images INTEGER,
        seconds DOUBLE, images_per_second DOUBLE, finished_at TIMESTAMP,
        PRIMARY KEY (config_hash, reconstructor, level))""",
    """CREATE TABLE IF NOT EXISTS thresholds (
        config_hash VARCHAR, label VARCHAR, threshold DOUBLE, PRIMARY KEY (config_hash, label))""",
    """CREATE TABLE IF NOT EXISTS image_metrics (
        config_hash VARCHAR, modality VARCHAR, reconstructor VARCHAR, level DOUBLE, image_id VARCHAR,
        subject_id VARCHAR, sex VARCHAR, age DOUBLE, age_band VARCHAR,
        PRIMARY KEY (config_hash, reconstructor, level, image_id))""",
    # one column per per-image metric of the catalogue; a store from before a metric existed gains it in place
    *["ALTER TABLE image_metrics ADD COLUMN IF NOT EXISTS " + name + " DOUBLE" for name in IMAGE_COLUMNS],
    """CREATE TABLE IF NOT EXISTS image_scores (
        config_hash VARCHAR, reconstructor VARCHAR, level DOUBLE, image_id VARCHAR, label VARCHAR,
        score DOUBLE, target DOUBLE, PRIMARY KEY (config_hash, reconstructor, level, image_id, label))""",
    """CREATE TABLE IF NOT EXISTS aggregates (
        config_hash VARCHAR, reconstructor VARCHAR, level DOUBLE, metric VARCHAR, label VARCHAR,
        attribute VARCHAR, grp VARCHAR, estimate DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
        n INTEGER, n_pos INTEGER, p_value DOUBLE, q_value DOUBLE,
        PRIMARY KEY (config_hash, reconstructor, level, metric, label, attribute, grp))""",
    # stores written before p/q-values existed gain the columns in place
    "ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS p_value DOUBLE",
    "ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS q_value DOUBLE",
    # the test family a p-value belongs to (set with its q-value when the run is complete), and the share
    # of bootstrap resamples in which a statistic had no value
    "ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS family VARCHAR",
    "ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS dropped DOUBLE",
    # the version of the statistics the run's aggregates were computed with (fairness.STATISTICS_VERSION)
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS statistics INTEGER",
    # scope: 'pooled', 'within levels' or 'level <v>'; a store from before scopes is migrated by _scope_correlations
    CORRELATIONS.format(name="correlations"),
    """CREATE TABLE IF NOT EXISTS image_attributes (
        config_hash VARCHAR, image_id VARCHAR, attribute VARCHAR, value VARCHAR,
        PRIMARY KEY (config_hash, image_id, attribute))""",
    # a failed cell's reason (a user model that broke its contract); cleared when the cell is run again
    "ALTER TABLE cells ADD COLUMN IF NOT EXISTS message VARCHAR",
    # the user's models a run used: where each was read, its content hash and its declared contract
    """CREATE TABLE IF NOT EXISTS model_cards (
        config_hash VARCHAR, role VARCHAR, name VARCHAR, source VARCHAR, location VARCHAR, sha256 VARCHAR,
        contract_json VARCHAR, PRIMARY KEY (config_hash, role, name))""",
    # a sampler's posterior samples: each one's diagnostic answer (a finding's score, or 'dice'), per image
    """CREATE TABLE IF NOT EXISTS sample_scores (
        config_hash VARCHAR, reconstructor VARCHAR, level DOUBLE, image_id VARCHAR, draw INTEGER, name VARCHAR,
        value DOUBLE, PRIMARY KEY (config_hash, reconstructor, level, image_id, draw, name))""",
    # per image, the sums behind the calibration curve of a sampler's spread, in fixed bins of the std
    """CREATE TABLE IF NOT EXISTS image_calibration (
        config_hash VARCHAR, reconstructor VARCHAR, level DOUBLE, image_id VARCHAR, bin INTEGER, pixels DOUBLE,
        sum_std DOUBLE, sum_sq_error DOUBLE, PRIMARY KEY (config_hash, reconstructor, level, image_id, bin))""",
    # each mitigation variant against its base at one level: paired changes (variant − base) with tests
    """CREATE TABLE IF NOT EXISTS mitigation_effects (
        config_hash VARCHAR, reconstructor VARCHAR, base VARCHAR, level DOUBLE, metric VARCHAR, label VARCHAR,
        attribute VARCHAR, grp VARCHAR, estimate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n INTEGER, p_value DOUBLE,
        family VARCHAR, q_value DOUBLE,
        PRIMARY KEY (config_hash, reconstructor, level, metric, label, attribute, grp))""",
    """CREATE TABLE IF NOT EXISTS examples (
        config_hash VARCHAR, reconstructor VARCHAR, level DOUBLE, image_id VARCHAR, kind VARCHAR,
        height INTEGER, width INTEGER, pixels BLOB,
        PRIMARY KEY (config_hash, reconstructor, level, image_id, kind))""",
]


def _scope_correlations(con: duckdb.DuckDBPyConnection) -> None:
    """A store from before correlation scopes gets the scoped table; its rows, all across cells, become 'pooled'.

    DuckDB cannot change a primary key in place, so the table is made again and the rows copied,
    in one transaction.
    """
    has_scope = con.execute("""SELECT count(*) FROM information_schema.columns WHERE table_schema = 'main'
                               AND table_name = 'correlations' AND column_name = 'scope'""").fetchone()[0]
    if has_scope:
        return
    con.execute("BEGIN TRANSACTION")
    con.execute(CORRELATIONS.format(name="correlations_scoped"))
    con.execute("""INSERT INTO correlations_scoped SELECT config_hash, 'pooled', x_metric, y_metric, attribute,
                   estimate, ci_low, ci_high, n_cells FROM correlations""")
    con.execute("DROP TABLE correlations")
    con.execute("ALTER TABLE correlations_scoped RENAME TO correlations")
    con.execute("COMMIT")


CLEAN = "clean"
"""Reconstructor name of the clean road (ground-truth images, no degradation); its level is 0."""


class StoreBusyError(RuntimeError):
    """Another process kept the store locked for longer than the timeout."""


class StoreError(ValueError):
    """The store file is not a readable DuckDB database (damaged, truncated, or another kind of file)."""


def _damage(exc: Exception) -> bool:
    """Whether a DuckDB error means a damaged file, not our SQL (programming and integrity errors) or a lock.

    A bad block raises DuckDB's plain `Error` ("Corrupt database file: computed checksum …"),
    a truncated or foreign file an IOException, a torn one a Serialization or Internal error.
    """
    return (isinstance(exc, duckdb.Error) and not isinstance(exc, (duckdb.ProgrammingError, duckdb.IntegrityError))
            and not _locked(exc))


def _locked(exc: Exception) -> bool:
    """Whether DuckDB refused a connection because another process holds the file's lock ('… block …' is not one)."""
    return re.search(r"\block\b", str(exc), flags=re.IGNORECASE) is not None


def _unreadable(path: Path, exc: Exception) -> StoreError:
    """The named error for a damaged store: its path, DuckDB's first line, and what to do."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(f"{path}: not a readable Tandem store ({first}). Nothing was written to it; move it aside "
                      "and build again, or point --store / $TANDEM_STORE at another file")


class Store:
    """A DuckDB file opened briefly for each read or write; its schema is created on a Store's first write."""

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._schema_ready = False

    def exists(self) -> bool:
        """Whether the file has been created (by a first write)."""
        return self.path.exists()

    def version(self) -> str:
        """A token that changes with every committed write, read from file metadata without connecting.

        DuckDB appends each commit to `<file>.wal` and folds it into the file at checkpoints, so the
        size and modification time of the two files change on every write. Opening a connection
        costs ≈30 ms; a stat costs microseconds, which lets the dashboard check for new results on
        every interaction and serve everything else from its caches.
        """
        parts = []
        for file in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                info = file.stat()
            except FileNotFoundError:
                parts.append("-")
            else:
                parts.append(f"{info.st_mtime_ns}:{info.st_size}")
        return "|".join(parts)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, retried with backoff while another process holds the lock."""
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._schema_ready = self._schema_ready and self.path.exists()  # a file removed meanwhile is new
        deadline, pause = time.monotonic() + self.timeout, 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.Error as exc:
                if not _locked(exc):
                    raise _unreadable(self.path, exc) from None
                if time.monotonic() > deadline:
                    raise StoreBusyError(f"{self.path}: still locked by another process after "
                                         f"{self.timeout:.0f} s") from exc
                time.sleep(pause)
                pause = min(pause * 1.5, 0.5)
        try:
            if not read_only and not self._schema_ready:  # (connecting made the file if it was gone)
                for statement in SCHEMA:
                    con.execute(statement)
                _scope_correlations(con)
                con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                            [str(SCHEMA_VERSION)])
                self._schema_ready = True
            yield con
        except duckdb.Error as exc:
            if _damage(exc):  # a bad block met while reading or writing
                raise _unreadable(self.path, exc) from None
            raise
        finally:
            con.close()

    def query(self, sql: str, params: list | None = None):
        """A read-only query as a DataFrame; None when the store file does not exist yet."""
        return self.queries((sql, params))[0]

    def queries(self, *statements: tuple[str, list | None]) -> list:
        """Several read-only queries on one connection, each a DataFrame or None (no file yet, or no such table)."""
        if not self.exists():
            return [None] * len(statements)
        out = []
        with self.connect(read_only=True) as con:
            for sql, params in statements:
                try:
                    out.append(con.execute(sql, params or []).df())
                except duckdb.CatalogException:
                    out.append(None)  # an older or half-created store: the table is not there yet
        return out
