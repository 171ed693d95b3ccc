"""Plotly figures of stored results; used by the dashboard and by exports (no streamlit here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLOURS = qualitative.Safe


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(c) for c in colour[colour.index("(") + 1:-1].split(","))
    return f"rgba({r},{g},{b},{alpha})"


def metric_vs_level(agg: pd.DataFrame, metric: str, title: str, y_label: str, level_label: str,
                    baseline: pd.Series | None = None, higher_is_worse: bool = False) -> go.Figure:
    """One line per reconstructor with a shaded CI band; x = level on a log axis, most degraded to the right.

    `agg` holds rows of one metric (attribute 'all'); `baseline` is the clean-image row, drawn dashed.
    """
    fig = go.Figure()
    for i, (recon, rows) in enumerate(agg.sort_values("level").groupby("reconstructor", sort=False)):
        colour = COLOURS[i % len(COLOURS)]
        x = rows["level"].to_numpy()
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([rows.ci_high.to_numpy(), rows.ci_low.to_numpy()[::-1]]),
                                 fill="toself", fillcolor=_rgba(colour, 0.18), line=dict(width=0), mode="lines",
                                 hoverinfo="skip", showlegend=False, legendgroup=recon))
        fig.add_trace(go.Scatter(x=x, y=rows.estimate, mode="lines+markers", name=recon, legendgroup=recon,
                                 line=dict(color=colour),
                                 customdata=np.stack([rows.ci_low, rows.ci_high], axis=1),
                                 hovertemplate=f"{recon}<br>{level_label} %{{x:g}}<br>{y_label} %{{y:.3f}}"
                                               " [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>"))
    if baseline is not None and not np.isnan(baseline.estimate):
        fig.add_hline(y=baseline.estimate, line_dash="dash", line_color="gray",
                      annotation_text=f"clean images {baseline.estimate:.3f}", annotation_position="top left")
    ticks = sorted(agg["level"].unique())
    fig.update_xaxes(type="log", autorange=True if higher_is_worse else "reversed",
                     title=f"{level_label}, more degraded to the right",
                     tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    fig.update_yaxes(title=y_label)
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=50, b=10), legend_title="reconstructor")
    return fig


def group_forest(agg: pd.DataFrame, title: str, x_label: str) -> go.Figure:
    """Per-group estimates with CI whiskers, one colour per reconstructor (rows: metric of one attribute)."""
    fig = go.Figure()
    for i, (recon, rows) in enumerate(agg.groupby("reconstructor", sort=False)):
        fig.add_trace(go.Scatter(
            x=rows.estimate, y=rows.grp, mode="markers", name=recon,
            marker=dict(color=COLOURS[i % len(COLOURS)], size=10),
            error_x=dict(type="data", symmetric=False, array=rows.ci_high - rows.estimate,
                         arrayminus=rows.estimate - rows.ci_low),
            customdata=np.stack([rows.n, rows.ci_low, rows.ci_high], axis=1),
            hovertemplate=f"{recon} · %{{y}}: %{{x:.3f}} [%{{customdata[1]:.3f}}, %{{customdata[2]:.3f}}]"
                          " · n=%{customdata[0]}<extra></extra>"))
    fig.update_layout(title=title, height=300, margin=dict(l=10, r=10, t=50, b=10), scattermode="group",
                      xaxis_title=x_label, legend_title="reconstructor")
    return fig


def gap_bars(agg: pd.DataFrame, title: str) -> go.Figure:
    """Gap metrics (rows: metric × reconstructor) as bars with CI whiskers."""
    fig = go.Figure()
    for metric, rows in agg.groupby("metric", sort=False):
        fig.add_trace(go.Bar(x=rows.reconstructor, y=rows.estimate, name=metric,
                             error_y=dict(type="data", symmetric=False, array=rows.ci_high - rows.estimate,
                                          arrayminus=rows.estimate - rows.ci_low)))
    fig.add_hline(y=0, line_color="gray")
    fig.update_layout(title=title, barmode="group", height=300, margin=dict(l=10, r=10, t=50, b=10))
    return fig


OUTLINE_COLOURS = {"truth": "#00c853", "prediction": "#ff1744"}


def image_grid(panels: list[tuple], columns: int) -> go.Figure:
    """Images side by side with shared (synchronised) zoom.

    Each panel is (title, pixels, kind) or (title, pixels, kind, outlines) where outlines maps
    'truth' / 'prediction' to a binary mask drawn as a contour (green truth, red prediction).
    kind 'image': gray in [0, 1]; 'error': absolute error, inferno, 0–0.25; 'map': attribution, viridis, 0–1.
    """
    rows = int(np.ceil(len(panels) / columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[p[0] for p in panels],
                        shared_xaxes="all", shared_yaxes="all", horizontal_spacing=0.02, vertical_spacing=0.08)
    shown_legend = set()
    for k, (title, pixels, kind, *rest) in enumerate(panels):
        r, c = divmod(k, columns)
        error = kind == "error"
        scale = {"error": "Inferno", "map": "Viridis"}.get(kind, "Gray")
        fig.add_trace(go.Heatmap(z=pixels[::-1], colorscale=scale,
                                 zmin=0, zmax=0.25 if error else 1, showscale=False,
                                 hovertemplate=f"{title}<br>x %{{x}} y %{{y}}: %{{z:.3f}}<extra></extra>"),
                      row=r + 1, col=c + 1)
        for name, mask in (rest[0] if rest else {}).items():
            if mask is None or not np.any(mask):
                continue
            colour = OUTLINE_COLOURS[name]
            fig.add_trace(go.Contour(z=np.asarray(mask, dtype=np.uint8)[::-1], showscale=False, hoverinfo="skip",
                                     contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                                     line=dict(color=colour, width=2), name=f"tumour: {name}",
                                     showlegend=name not in shown_legend, legendgroup=name),
                          row=r + 1, col=c + 1)
            shown_legend.add(name)
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, scaleanchor="x", constrain="domain")
    fig.update_layout(height=260 * rows + 40, margin=dict(l=5, r=5, t=40, b=5))
    return fig


def added_heatmap(frame: pd.DataFrame, title: str, alpha: float = 0.05, higher_is_worse: bool = False) -> go.Figure:
    """Reconstructor × level grid of an added-bias metric, the most degraded level on the right; ★ marks q < alpha."""
    grid = frame.pivot_table(index="reconstructor", columns="level", values="estimate")
    q = frame.pivot_table(index="reconstructor", columns="level", values="q_value").reindex_like(grid)
    levels = sorted(grid.columns, reverse=not higher_is_worse)
    grid, q = grid[levels], q[levels]
    text = [[("" if np.isnan(v) else f"{v:+.3f}") + (" ★" if (qq == qq and qq < alpha) else "")
             for v, qq in zip(row_v, row_q, strict=True)] for row_v, row_q in zip(grid.values, q.values, strict=True)]
    limit = float(np.nanmax(np.abs(grid.values))) if np.isfinite(grid.values).any() else 1.0
    fig = go.Figure(go.Heatmap(z=grid.values, x=[f"{lv:g}" for lv in levels], y=list(grid.index), text=text,
                               texttemplate="%{text}", colorscale="RdBu_r", zmid=0, zmin=-limit, zmax=limit,
                               colorbar=dict(title="added"),
                               hovertemplate="%{y} at %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(type="category", title="level (more degraded to the right)")
    fig.update_layout(title=title, height=120 + 60 * len(grid.index), margin=dict(l=10, r=10, t=50, b=10))
    return fig


def quality_vs_task(cells: pd.DataFrame, x_label: str, y_label: str, title: str) -> go.Figure:
    """One point per (reconstructor, level) cell: image quality against the task metric."""
    fig = go.Figure()
    for i, (recon, rows) in enumerate(cells.groupby("reconstructor", sort=False)):
        fig.add_trace(go.Scatter(x=rows.x, y=rows.y, mode="markers+text", name=recon,
                                 text=[f"{lv:g}" for lv in rows.level], textposition="top center",
                                 marker=dict(size=10, color=COLOURS[i % len(COLOURS)]),
                                 error_y=dict(type="data", symmetric=False, array=rows.y_high - rows.y,
                                              arrayminus=rows.y - rows.y_low)))
    fig.update_layout(title=title, height=360, xaxis_title=x_label, yaxis_title=y_label,
                      margin=dict(l=10, r=10, t=50, b=10), legend_title="reconstructor")
    return fig
