"""Idempotent writes: a finished config adds no rows when run again; each cell lands in one transaction."""

from __future__ import annotations

import io
import json

import duckdb
import numpy as np
import pandas as pd

from recon_core.config import StudyConfig
from recon_core.metrics.catalogue import IMAGE_COLUMNS
from recon_core.store.database import Store

_IMAGE_METRIC_INSERT = (
    "INSERT INTO image_metrics (config_hash, modality, reconstructor, level, image_id, subject_id, sex, age, "
    "age_band, " + ", ".join(IMAGE_COLUMNS) + ") SELECT ?, modality, ?, ?, image_id, subject_id, sex, age, age_band, "
    + ", ".join(IMAGE_COLUMNS) + " FROM m ON CONFLICT DO NOTHING")
"""Column names come from the metric catalogue (checked as identifiers by the schema); values are parameters."""


def register_run(store: Store, config: StudyConfig, description: dict) -> str:
    """Records a run (config JSON and hash, and its modality's description) if new, marks it running; returns the hash.

    `description` is what the modality says about drawing the run: level axis and direction,
    headline metrics, statistical unit (`Modality.describe`).
    """
    key = config.config_hash()
    level = description["level"]
    with store.connect() as con:
        con.execute(
            """INSERT INTO runs (config_hash, name, modality, config_json, level_name, level_unit, status, created_at,
                                 updated_at, description_json)
               VALUES (?, ?, ?, ?, ?, ?, 'running', now(), now(), ?)
               ON CONFLICT (config_hash) DO UPDATE SET status = 'running', updated_at = now(), message = NULL,
                   description_json = excluded.description_json""",
            [key, config.name, config.modality, json.dumps(config.to_dict(), sort_keys=True), level["name"],
             level["unit"], json.dumps(description, sort_keys=True)])
    return key


def set_run_status(store: Store, key: str, status: str, seconds: float | None = None,
                   message: str | None = None) -> None:
    """Marks a run finished, failed or interrupted (with the reason)."""
    with store.connect() as con:
        con.execute("UPDATE runs SET status = ?, seconds = coalesce(?, seconds), message = ?, "
                    "updated_at = now() WHERE config_hash = ?", [status, seconds, message, key])


def write_thresholds(store: Store, key: str, thresholds: dict[str, float]) -> None:
    """Stores the fixed per-label operating thresholds (first write wins)."""
    with store.connect() as con:
        con.executemany("INSERT INTO thresholds VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        [[key, label, value] for label, value in thresholds.items()])


def encode_pixels(image: np.ndarray) -> bytes:
    """float16 .npy bytes of one image (small, exact enough to display and to diff)."""
    buffer = io.BytesIO()
    np.save(buffer, image.astype(np.float16), allow_pickle=False)
    return buffer.getvalue()


def set_statistics(store: Store, key: str, statistics: int) -> None:
    """Records that every stored aggregate of the run comes from this statistics version (STATISTICS_VERSION)."""
    with store.connect() as con:
        con.execute("UPDATE runs SET statistics = ? WHERE config_hash = ?", [statistics, key])


def write_q_values(store: Store, key: str, tests: pd.DataFrame) -> None:
    """Stores the run's test families and q-values (one row per test: reconstructor, level, metric, label,
    attribute, grp, family, q_value)."""
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        con.register("q", tests)
        con.execute("UPDATE aggregates SET q_value = NULL, family = NULL WHERE config_hash = ?", [key])
        con.execute("""UPDATE aggregates AS a SET q_value = q.q_value, family = q.family FROM q
                       WHERE a.config_hash = ? AND a.reconstructor = q.reconstructor AND a.level = q.level
                         AND a.metric = q.metric AND a.label = q.label AND a.attribute = q.attribute
                         AND a.grp = q.grp""", [key])
        con.execute("COMMIT")


def replace_correlations(store: Store, key: str, table: pd.DataFrame) -> None:
    """Replaces a run's quality–task correlations, every scope (derived from all its cells, so recomputed whole)."""
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM correlations WHERE config_hash = ?", [key])
        con.register("c", table)
        con.execute("""INSERT INTO correlations SELECT ?, scope, x_metric, y_metric, attribute, estimate, ci_low,
                       ci_high, n_cells FROM c""", [key])
        con.execute("COMMIT")


def replace_mitigation_effects(store: Store, key: str, table: pd.DataFrame) -> None:
    """Replaces a run's mitigation effects (each variant against its base; recomputed whole when the run finalises)."""
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM mitigation_effects WHERE config_hash = ?", [key])
        if not table.empty:
            con.register("m", table)
            con.execute("""INSERT INTO mitigation_effects SELECT ?, reconstructor, base, level, metric, label,
                           attribute, grp, estimate, ci_low, ci_high, n, p_value, family, q_value FROM m""", [key])
        con.execute("COMMIT")


def write_attributes(store: Store, key: str, attributes: pd.DataFrame) -> None:
    """Extra per-image group columns (e.g. race from a real dataset), long form, first write wins."""
    if attributes.empty:
        return
    with store.connect() as con:
        con.register("g", attributes)
        con.execute("""INSERT INTO image_attributes SELECT ?, image_id, attribute, value FROM g
                       ON CONFLICT DO NOTHING""", [key])


def write_cell_rows(store: Store, key: str, reconstructor: str, level: float, metrics: pd.DataFrame,
                    scores: pd.DataFrame, examples: dict[tuple[str, str], np.ndarray],
                    samples: pd.DataFrame | None = None, calibration: pd.DataFrame | None = None) -> None:
    """Per-image rows, per-label scores and example pixels of one cell, in one transaction; for a sampler also
    each posterior sample's answers and the calibration-curve sums."""
    examples_df = pd.DataFrame(
        [dict(image_id=i, kind=k, height=a.shape[0], width=a.shape[1], pixels=encode_pixels(a))
         for (i, k), a in examples.items()],
        columns=["image_id", "kind", "height", "width", "pixels"])
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        con.register("s", scores)
        con.register("e", examples_df)
        con.register("m", metrics.reindex(columns=[*metrics.columns.drop(list(IMAGE_COLUMNS), errors="ignore"),
                                                   *IMAGE_COLUMNS]))
        con.execute(_IMAGE_METRIC_INSERT, [key, reconstructor, level])
        con.execute("""INSERT INTO image_scores SELECT ?, ?, ?, image_id, label, score, target FROM s
                       ON CONFLICT DO NOTHING""", [key, reconstructor, level])
        con.execute("""INSERT INTO examples SELECT ?, ?, ?, image_id, kind, height, width, pixels FROM e
                       ON CONFLICT DO NOTHING""", [key, reconstructor, level])
        if samples is not None and not samples.empty:
            con.register("d", samples)
            con.execute("""INSERT INTO sample_scores SELECT ?, ?, ?, image_id, draw, name, value FROM d
                           ON CONFLICT DO NOTHING""", [key, reconstructor, level])
        if calibration is not None and not calibration.empty:
            con.register("c", calibration)
            con.execute("""INSERT INTO image_calibration SELECT ?, ?, ?, image_id, bin, pixels, sum_std, sum_sq_error
                           FROM c ON CONFLICT DO NOTHING""", [key, reconstructor, level])
        con.execute("""INSERT INTO cells (config_hash, reconstructor, level, status, n_images)
                       VALUES (?, ?, ?, 'rows', ?)
                       ON CONFLICT DO UPDATE SET status = 'rows', n_images = excluded.n_images, message = NULL""",
                    [key, reconstructor, level, len(metrics)])
        con.execute("COMMIT")


def _insert_aggregates(con: duckdb.DuckDBPyConnection, key: str, reconstructor: str, level: float,
                       aggregates: pd.DataFrame) -> None:
    con.register("a", aggregates)
    con.execute("""INSERT INTO aggregates (config_hash, reconstructor, level, metric, label, attribute, grp,
                   estimate, ci_low, ci_high, n, n_pos, p_value, dropped)
                   SELECT ?, ?, ?, metric, label, attribute, grp, estimate, ci_low, ci_high, n, n_pos, p_value, dropped
                   FROM a ON CONFLICT DO NOTHING""", [key, reconstructor, level])


def replace_aggregates(store: Store, key: str, reconstructor: str, level: float, aggregates: pd.DataFrame) -> None:
    """Replaces a finished cell's aggregates (recomputed from its stored rows by newer statistics), atomically."""
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM aggregates WHERE config_hash = ? AND reconstructor = ? AND level = ?",
                    [key, reconstructor, level])
        _insert_aggregates(con, key, reconstructor, level, aggregates)
        con.execute("COMMIT")


def finish_cell(store: Store, key: str, reconstructor: str, level: float, aggregates: pd.DataFrame,
                seconds: float, images_per_second: float) -> None:
    """Writes a cell's aggregates and marks it done, in one transaction."""
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        _insert_aggregates(con, key, reconstructor, level, aggregates)
        con.execute("""UPDATE cells SET status = 'done', seconds = ?, images_per_second = ?, finished_at = now()
                       WHERE config_hash = ? AND reconstructor = ? AND level = ?""",
                    [seconds, images_per_second, key, reconstructor, level])
        con.execute("COMMIT")


def fail_cell(store: Store, key: str, reconstructor: str, level: float, message: str) -> None:
    """Marks a cell failed with its reason; it holds no rows (a failing cell stores none) and runs again on resume."""
    with store.connect() as con:
        con.execute("""INSERT INTO cells (config_hash, reconstructor, level, status, message)
                       VALUES (?, ?, ?, 'failed', ?)
                       ON CONFLICT DO UPDATE SET status = 'failed', message = excluded.message, finished_at = now()""",
                    [key, reconstructor, level, message])


def write_model_cards(store: Store, key: str, cards: pd.DataFrame) -> None:
    """The user's models of a run (role, name, source, location, SHA-256, contract); kept as first written."""
    if cards.empty:
        return
    with store.connect() as con:
        con.register("m", cards)
        con.execute("""INSERT INTO model_cards SELECT ?, role, name, source, location, sha256, contract_json FROM m
                       ON CONFLICT DO NOTHING""", [key])


RUN_TABLES = ("cells", "model_cards", "thresholds", "image_metrics", "image_scores", "sample_scores",
              "image_calibration", "aggregates", "correlations", "mitigation_effects", "image_attributes", "examples",
              "runs")
"""Every table whose rows carry a run's config hash (the run's own row last)."""


def forget_run(store: Store, key: str) -> None:
    """Removes every row of a run that was new in this call and stopped on bad input: a good store keeps no trace."""
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        for table in RUN_TABLES:  # names from the schema above, never from input
            con.execute("DELETE FROM " + table + " WHERE config_hash = ?", [key])
        con.execute("COMMIT")
