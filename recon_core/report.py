"""One self-contained HTML page of a run's current selection, to share at a lab meeting.

Everything is inline (plotly.js once, example images as PNG data URIs): the file opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from recon_core import plots
from recon_core.store import CLEAN, Store, queries


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t")


def build_report(store: Store, key: str, reconstructors: Sequence[str], levels: Sequence[float],
                 attribute: str = "sex", level: float | None = None) -> str:
    """HTML for the chosen reconstructors and levels: curves, fairness, correlations, examples."""
    run = queries.runs(store).set_index("config_hash").loc[key]
    agg = queries.aggregates(store, key)
    view = agg[agg.reconstructor.isin(reconstructors) & agg.level.isin(levels)]
    clean = agg[agg.reconstructor == CLEAN]
    unit = f"{run.level_name} ({run.level_unit})"
    level = min(levels) if level is None else level

    def overall(frame: pd.DataFrame, metric: str, label: str = "") -> pd.DataFrame:
        return frame[(frame.metric == metric) & (frame.label == label) & (frame.attribute == "all")]

    base = overall(clean, "auroc", "mean")
    figures = [
        plots.metric_vs_level(overall(view, "psnr"), "psnr", "Image quality: PSNR", "PSNR (dB)", unit),
        plots.metric_vs_level(overall(view, "auroc", "mean"), "auroc", "Task: mean AUROC", "mean AUROC", unit,
                              base.iloc[0] if len(base) else None),
        plots.added_heatmap(view[(view.metric == "eo_gap_added") & (view.label == "mean")
                                 & (view.attribute == attribute)],
                            f"Equal-opportunity gap added by {attribute}; ★ q < 0.05 (Benjamini–Hochberg)"),
    ]
    parts = [fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
             for i, fig in enumerate(figures)]
    added = view[(view.level == level) & view.metric.isin(["auroc_added", "eo_gap_added", "eodd_added"])
                 & (view.label == "mean") & view.attribute.isin(["all", attribute]) & view.grp.isin(["all", ""])]
    corr = queries.correlations(store, key)
    examples = []
    clean_ex = queries.examples(store, key, CLEAN, 0.0)
    for image_id in sorted(clean_ex.image_id.unique())[:3]:
        cells = [("clean", clean_ex[clean_ex.image_id == image_id].pixels.iloc[0])]
        for name in reconstructors:
            ex = queries.examples(store, key, name, float(level))
            ex = ex[ex.image_id == image_id]
            if len(ex):
                if len(cells) == 1:
                    cells.append((f"degraded ({level:g})", ex[ex.kind == "degraded"].pixels.iloc[0]))
                cells.append((name, ex[ex.kind == "reconstructed"].pixels.iloc[0]))
        examples.append(f"<h4>{html.escape(image_id)}</h4><div class='row'>" + "".join(
            f"<figure><img src='{_png(p)}' width='192'><figcaption>{html.escape(t)}</figcaption></figure>"
            for t, p in cells) + "</div>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tandem report: {html.escape(run['name'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
.row{{display:flex;gap:8px;flex-wrap:wrap}} figure{{margin:0;text-align:center}}
table.t{{border-collapse:collapse}} table.t td,table.t th{{padding:4px 8px;border-bottom:1px solid #ddd}}</style>
</head><body>
<h1>Tandem report: {html.escape(run['name'])}</h1>
<p>Run {html.escape(key)} · status {html.escape(str(run.status))} · reconstructors
{html.escape(', '.join(reconstructors))} · levels {html.escape(', '.join(f'{v:g}' for v in levels))}
{html.escape(run.level_unit)}.
Intervals are 95 % paired bootstrap intervals over test images; "added" = reconstructed − clean.</p>
{''.join(parts)}
<h2>Added by reconstruction at {level:g} {html.escape(run.level_unit)}</h2>
{_table(added[["reconstructor", "metric", "attribute", "estimate", "ci_low", "ci_high", "p_value", "q_value"]])}
<h2>Does image quality predict the task?</h2>
{_table(corr.drop(columns="config_hash")) if len(corr) else "<p>Fewer than three cells.</p>"}
<h2>Example images at {level:g} {html.escape(run.level_unit)}</h2>
{''.join(examples)}
</body></html>"""
