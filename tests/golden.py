"""Golden aggregates of the tiny X-ray and MRI studies: what a redesign must leave unchanged.

`python -m tests.golden` rebuilds both tiny studies in a temporary folder and writes the
selected aggregates, correlations and thresholds to tests/data/golden-<config>.csv. The files
committed were made before the "open the seams" redesign and rewritten once for the gap
statistics of statistics version 2 (signed differences, stated families, stratified bootstrap,
minimum positives and negatives per group), and once for SSIM's separable window (MONAI's
values to float rounding: SSIM rows moved by ≤ 4·10⁻⁶, and the tiny X-ray study's ssim~auroc
Spearman moved 0.648 → 0.636 because the GAN's and the noisy input's mean SSIM at 3,000 photons
differ by 10⁻⁶ and swapped ranks); `tests/test_golden.py` compares every later build
with them. Rewrite them only for a change meant to move the numbers, and say why in the commit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from recon_core.config_loader import load_config
from recon_core.runner import run_study
from recon_core.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CONFIGS = ("tiny", "tiny-mri")
METRICS = ("psnr", "ssim", "nmse", "psnr_volume", "auroc", "tpr", "fpr", "eo_gap", "eodd", "auroc_added",
           "eo_gap_added", "eodd_added", "tpr_diff", "dice", "dice_gap", "dice_added", "dice_gap_added", "hd95",
           "tpr_diff_added", "eodd_diff", "eodd_diff_added", "dice_diff", "dice_diff_added")
COLUMNS = ["kind", "reconstructor", "level", "metric", "label", "attribute", "grp", "estimate", "ci_low", "ci_high",
           "n", "p_value", "q_value", "family"]


def golden_rows(store: Store, key: str) -> pd.DataFrame:
    """Selected aggregates (overall and by sex, label mean or none), pooled correlations and thresholds of a run.

    The correlations across all cells are the ones the golden files were made with; the within-level
    ones came later and are checked by tests/test_correlation.py.
    """
    agg = store.query("""SELECT 'aggregate' AS kind, reconstructor, level, metric, label, attribute, grp, estimate,
                                ci_low, ci_high, n, p_value, q_value, family
                         FROM aggregates WHERE config_hash = ? AND list_contains(?, metric)
                           AND label IN ('', 'mean') AND attribute IN ('all', 'sex')""",
                      [key, list(METRICS)])
    corr = store.query("""SELECT 'correlation' AS kind, '' AS reconstructor, 0.0 AS level,
                                 x_metric || '~' || y_metric AS metric, '' AS label, attribute, '' AS grp, estimate,
                                 ci_low, ci_high, n_cells AS n, NULL AS p_value, NULL AS q_value,
                                 NULL AS family
                          FROM correlations WHERE config_hash = ? AND scope = 'pooled'""", [key])
    thr = store.query("""SELECT 'threshold' AS kind, '' AS reconstructor, 0.0 AS level, 'threshold' AS metric, label,
                                '' AS attribute, '' AS grp, threshold AS estimate, NULL AS ci_low, NULL AS ci_high,
                                NULL AS n, NULL AS p_value, NULL AS q_value, NULL AS family
                         FROM thresholds WHERE config_hash = ?""", [key])
    out = pd.concat([agg, corr, thr], ignore_index=True)[COLUMNS]
    return out.sort_values(COLUMNS[:7]).reset_index(drop=True)


def golden_path(config: str) -> Path:
    return DATA / f"golden-{config}.csv"


def main() -> int:
    """Builds both tiny studies from scratch and writes their golden files."""
    torch.set_num_threads(2)
    DATA.mkdir(parents=True, exist_ok=True)
    for name in CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "tandem.duckdb")
            key = run_study(load_config(ROOT / "configs" / f"{name}.yaml"), store, Path(tmp) / "checkpoints",
                            torch.device("cpu"))
            rows = golden_rows(store, key)
        rows.to_csv(golden_path(name), index=False, float_format="%.10g")
        print(f"{golden_path(name)}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
