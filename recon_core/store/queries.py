"""Read queries the runner, CLI and dashboard pages use; all parameterised, all read-only."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from recon_core.metrics.catalogue import BY_NAME, IMAGE_COLUMNS
from recon_core.store.database import Store


def _frame(result: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    return result if result is not None else pd.DataFrame(columns=columns)


RUN_COLUMNS = ["config_hash", "name", "modality", "status", "level_name", "level_unit", "created_at", "updated_at",
               "seconds", "message", "description_json", "statistics", "cells_done"]


def runs(store: Store) -> pd.DataFrame:
    """Every run, newest first, with cell counts and what its modality stored about drawing it."""
    frame = store.query(
        """SELECT r.* EXCLUDE (config_json), count(c.reconstructor) FILTER (WHERE c.status = 'done') AS cells_done
           FROM runs r LEFT JOIN cells c USING (config_hash)
           GROUP BY ALL ORDER BY r.created_at DESC""")
    # a store written before the description columns existed still reads (they are then missing)
    return _frame(frame, RUN_COLUMNS).reindex(columns=RUN_COLUMNS)


def run_status(store: Store, key: str) -> str | None:
    """The status of one run ('running', 'done', 'incomplete', 'failed', 'interrupted'), or None if it is not stored."""
    df = store.query("SELECT status FROM runs WHERE config_hash = ?", [key])
    return None if df is None or df.empty else str(df.iloc[0, 0])


def run_config(store: Store, key: str) -> dict | None:
    """The stored config of a run as a dict."""
    df = store.query("SELECT config_json FROM runs WHERE config_hash = ?", [key])
    return None if df is None or df.empty else json.loads(df.iloc[0, 0])


CELL_COLUMNS = ["config_hash", "reconstructor", "level", "status", "n_images", "seconds", "images_per_second",
                "finished_at", "message"]


def cells(store: Store, key: str) -> pd.DataFrame:
    """A run's cells with status and timings (a store written before cells had a message reads it as missing)."""
    return _frame(store.query("SELECT * FROM cells WHERE config_hash = ? ORDER BY reconstructor, level DESC", [key]),
                  CELL_COLUMNS).reindex(columns=CELL_COLUMNS)


def failed_cells(store: Store, key: str) -> pd.DataFrame:
    """A run's failed cells (reconstructor, level) with the reason each failed."""
    df = cells(store, key)
    return df.loc[df.status == "failed", ["reconstructor", "level", "message"]].reset_index(drop=True)


def model_cards(store: Store, key: str) -> pd.DataFrame:
    """The user's models a run used: role, name, source, location, SHA-256 and declared contract (JSON)."""
    return _frame(store.query("""SELECT role, name, source, location, sha256, contract_json FROM model_cards
                                 WHERE config_hash = ? ORDER BY role, name""", [key]),
                  ["role", "name", "source", "location", "sha256", "contract_json"])


def done_cells(store: Store, key: str) -> set[tuple[str, float]]:
    """(reconstructor, level) pairs already finished."""
    df = cells(store, key)
    return {(r, float(lv)) for r, lv in zip(df.reconstructor[df.status == "done"],
                                            df.level[df.status == "done"], strict=True)}


def thresholds(store: Store, key: str) -> dict[str, float]:
    """The run's fixed operating thresholds."""
    df = store.query("SELECT label, threshold FROM thresholds WHERE config_hash = ?", [key])
    return {} if df is None else dict(zip(df.label, df.threshold, strict=True))


AGGREGATE_COLUMNS = ["config_hash", "reconstructor", "level", "metric", "label", "attribute", "grp", "estimate",
                     "ci_low", "ci_high", "n", "n_pos", "p_value", "q_value", "family", "dropped"]


def aggregates(store: Store, key: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Aggregates of a run, optionally only some metrics."""
    sql = "SELECT * FROM aggregates WHERE config_hash = ?"
    params: list = [key]
    if metrics:
        sql += " AND list_contains(?, metric)"
        params.append(metrics)
    # a store written before a column existed, read without a write (the dashboard's snapshot), lacks it: NaN
    return _frame(store.query(sql + " ORDER BY reconstructor, level", params), AGGREGATE_COLUMNS).reindex(
        columns=AGGREGATE_COLUMNS)


def added_tests(store: Store, key: str) -> pd.DataFrame:
    """Every added-bias test of a run with its p-value (the input of the run's multiple-testing correction)."""
    return _frame(store.query("""SELECT reconstructor, level, metric, label, attribute, grp, ci_low, ci_high, p_value
                                 FROM aggregates WHERE config_hash = ? AND p_value IS NOT NULL""", [key]),
                  ["reconstructor", "level", "metric", "label", "attribute", "grp", "ci_low", "ci_high", "p_value"])


def image_rows(store: Store, key: str, reconstructor: str, level: float) -> pd.DataFrame:
    """One cell's per-image rows, wide: metrics plus score:<label> and target:<label> columns (one connection)."""
    cell = [key, reconstructor, level]
    # every column the file has: a store written before a column was added still reads (the column is NaN)
    metrics, scores, extra = store.queries(
        ("""SELECT * EXCLUDE (config_hash, modality, reconstructor, level)
            FROM image_metrics WHERE config_hash = ? AND reconstructor = ? AND level = ?""", cell),
        ("""SELECT image_id, label, score, target FROM image_scores
            WHERE config_hash = ? AND reconstructor = ? AND level = ?""", cell),
        ("SELECT image_id, attribute, value FROM image_attributes WHERE config_hash = ?", [key]))
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    present = metrics.columns.drop(list(IMAGE_COLUMNS), errors="ignore")
    metrics = metrics.reindex(columns=[*present, *IMAGE_COLUMNS])
    # segmentation (lesion, posterior) columns only where there is segmentation (known sites, a sampler)
    for column in IMAGE_COLUMNS:
        if BY_NAME[column].kind in ("segmentation", "lesion", "uncertainty") and metrics[column].isna().all():
            metrics = metrics.drop(columns=column)
    wide = scores.pivot(index="image_id", columns="label", values=["score", "target"])
    wide.columns = [f"{kind}:{label}" for kind, label in wide.columns]
    rows = metrics.merge(wide.reset_index(), on="image_id")
    return _with_attributes(rows, extra).sort_values("image_id").reset_index(drop=True)


def _with_attributes(rows: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """`rows` with the run's extra per-image group columns (`image_attributes`, long) joined on as columns."""
    if extra is None or extra.empty:
        return rows
    return rows.merge(extra.pivot(index="image_id", columns="attribute", values="value").reset_index(),
                      on="image_id", how="left")


def decode_pixels(blob: bytes) -> np.ndarray:
    """float32 image from stored .npy bytes."""
    return np.load(io.BytesIO(blob), allow_pickle=False).astype(np.float32)


def examples(store: Store, key: str, reconstructor: str, level: float) -> pd.DataFrame:
    """Stored example images of one cell (image_id, kind, pixels as float32 arrays)."""
    df = store.query("""SELECT image_id, kind, pixels FROM examples
                        WHERE config_hash = ? AND reconstructor = ? AND level = ? ORDER BY image_id, kind""",
                     [key, reconstructor, level])
    if df is None:
        return pd.DataFrame(columns=["image_id", "kind", "pixels"])
    df["pixels"] = [decode_pixels(bytes(b)) for b in df["pixels"]]
    return df


CORRELATION_COLUMNS = ["config_hash", "scope", "x_metric", "y_metric", "attribute", "estimate", "ci_low", "ci_high",
                       "n_cells"]


def correlations(store: Store, key: str) -> pd.DataFrame:
    """A run's quality–task rank correlations with their intervals, each with its scope.

    A store written before scopes existed, and not written to since (a reader does not migrate
    it), has only rows across all cells: they read as scope 'pooled'.
    """
    frame = _frame(store.query("SELECT * FROM correlations WHERE config_hash = ? ORDER BY attribute, x_metric",
                               [key]), CORRELATION_COLUMNS)
    if "scope" not in frame:
        frame = frame.assign(scope="pooled")
    return frame.reindex(columns=CORRELATION_COLUMNS).sort_values(
        ["attribute", "x_metric", "y_metric", "scope"], kind="stable").reset_index(drop=True)


MITIGATION_COLUMNS = ["reconstructor", "base", "level", "metric", "label", "attribute", "grp", "estimate", "ci_low",
                      "ci_high", "n", "p_value", "family", "q_value"]


def mitigation_effects(store: Store, key: str) -> pd.DataFrame:
    """A run's mitigation effects: each variant's paired change (variant − base) per level, statistic and group."""
    return _frame(store.query("""SELECT * EXCLUDE (config_hash) FROM mitigation_effects WHERE config_hash = ?
                                 ORDER BY reconstructor, level DESC, metric, label, attribute, grp""", [key]),
                  MITIGATION_COLUMNS).reindex(columns=MITIGATION_COLUMNS)


def image_scores(store: Store, key: str, image_id: str) -> pd.DataFrame:
    """The classifier's per-label scores for one image on every road (clean and each cell)."""
    return _frame(store.query("""SELECT reconstructor, level, label, score, target FROM image_scores
                                 WHERE config_hash = ? AND image_id = ? ORDER BY reconstructor, level, label""",
                              [key, image_id]),
                  ["reconstructor", "level", "label", "score", "target"])


def sample_scores(store: Store, key: str, reconstructor: str, level: float,
                  image_ids: list[str] | None = None) -> pd.DataFrame:
    """A sampler cell's per-sample diagnostic answers: image_id, draw, name (a finding or 'dice'), value."""
    sql = """SELECT image_id, draw, name, value FROM sample_scores
             WHERE config_hash = ? AND reconstructor = ? AND level = ?"""
    params: list = [key, reconstructor, level]
    if image_ids is not None:
        sql += " AND list_contains(?, image_id)"
        params.append(list(image_ids))
    return _frame(store.query(sql + " ORDER BY image_id, draw, name", params), ["image_id", "draw", "name", "value"])


def calibration_sums(store: Store, key: str, reconstructor: str, level: float) -> pd.DataFrame:
    """A sampler cell's per-image calibration-curve sums (bin, pixels, Σ std, Σ squared error) with demographics
    and the run's extra group columns (as `image_rows`, so every attribute the sidebar offers can group them)."""
    columns = ["image_id", "subject_id", "sex", "age_band", "bin", "pixels", "sum_std", "sum_sq_error"]
    sums, extra = store.queries(
        ("""SELECT c.image_id, m.subject_id, m.sex, m.age_band, c.bin, c.pixels, c.sum_std, c.sum_sq_error
            FROM image_calibration c JOIN image_metrics m
              ON m.config_hash = c.config_hash AND m.reconstructor = c.reconstructor
             AND m.level = c.level AND m.image_id = c.image_id
            WHERE c.config_hash = ? AND c.reconstructor = ? AND c.level = ?
            ORDER BY c.image_id, c.bin""", [key, reconstructor, level]),
        ("SELECT image_id, attribute, value FROM image_attributes WHERE config_hash = ?", [key]))
    sums = _frame(sums, columns)
    return sums if sums.empty else _with_attributes(sums, extra).sort_values(["image_id", "bin"]).reset_index(
        drop=True)


def sample_draws(store: Store, key: str, reconstructor: str, level: float) -> int:
    """How many posterior samples a sampler cell drew per image (0 for a deterministic reconstructor)."""
    df = store.query("""SELECT count(DISTINCT draw) FROM sample_scores
                        WHERE config_hash = ? AND reconstructor = ? AND level = ?""", [key, reconstructor, level])
    return 0 if df is None or df.empty else int(df.iloc[0, 0])
