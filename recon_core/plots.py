"""Plotly figures of stored results; used by the dashboard and by exports (no streamlit here).

Conventions every figure keeps, so a chart never says something the store does not:
- a reconstructor has one colour everywhere (`reconstructor_colours`, from the run's own list,
  the clean road gray), whatever subset is selected;
- points sit at their stored x: forest plots dodge reconstructors vertically on a numeric y axis
  whose ticks name the groups;
- error maps start at black (zero error) and carry a colour bar. Inferno's own first colour,
  #000004, is one of the placeholder colours Streamlit's chart theme replaces with its palette,
  so the scale below starts at #000000 instead (and panels are painted server-side as PNG).
"""

from __future__ import annotations

import base64
import hashlib
import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import qualitative, sample_colorscale, sequential
from plotly.subplots import make_subplots

CLEAN_COLOUR = "rgb(136, 136, 136)"
"""The clean road (the diagnostic model on clean images): gray on every chart."""
PALETTE = [c for c in qualitative.Safe if c != CLEAN_COLOUR] + qualitative.Dark2
"""Colours of reconstructors, in the order the run lists them (colour-blind safe first)."""
ERROR_SCALE = [[i / (len(sequential.Inferno) - 1), c] for i, c in enumerate(["#000000", *sequential.Inferno[1:]])]
"""Inferno from black: zero error is black on every page and export (see the module docstring)."""
ERROR_MAX = 0.25
"""Error maps share one scale, 0 to this absolute error (images are in [0, 1])."""
MARGIN = dict(l=70, r=20, t=60, b=60)
"""Room for tick labels and axis titles: a figure exported as HTML keeps them uncut."""
CHART_SIZE = (960, 540, 2.0)
"""A chart's PNG export: (width, height, scale) in CSS pixels, 1920×1080 pixels on a slide."""
SLIDES_SIZE = (1280, 720, 1.5)
"""The figure for slides' PNG export: three panels need more room, still 1920×1080 pixels."""
INTERVALS = {"metric_vs_level": "bands", "group_forest": "whiskers", "change_forest": "whiskers", "gap_bars": "bars",
             "quality_vs_task": "bars", "mitigation_frontier": "bars", "slides_figure": "bands and bars"}
"""How each builder draws its intervals, for the note an exported chart carries (others draw none)."""


def reconstructor_colours(names: Sequence[str], clean: str = "clean") -> dict[str, str]:
    """One colour per reconstructor of a run, by its position in the run's list; the clean road gray."""
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(n for n in names if n != clean))}
    return {clean: CLEAN_COLOUR} | colours


def _by_reconstructor(frame: pd.DataFrame, colours: Mapping[str, str] | None) -> list[tuple[str, pd.DataFrame]]:
    """`frame`'s rows per reconstructor, in the run's order (the order of `colours`), so legends agree."""
    groups = [(str(name), rows) for name, rows in frame.groupby("reconstructor", sort=False, observed=True)]
    order = {name: i for i, name in enumerate(colours or {})}
    return sorted(groups, key=lambda group: order.get(group[0], len(order)))


def _colour(name: str, colours: Mapping[str, str] | None) -> str:
    """`name`'s colour in `colours`; a name outside them gets one from its own hash, the same on every chart."""
    if colours and name in colours:
        return colours[name]
    return PALETTE[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(PALETTE)]


def _rgba(colour: str, alpha: float) -> str:
    """A '#rrggbb' or 'rgb(r, g, b)' colour with transparency, for CI bands."""
    if colour.startswith("#"):
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(c) for c in colour[colour.index("(") + 1:-1].split(","))
    return f"rgba({r},{g},{b},{alpha})"


def _axes(fig: go.Figure) -> None:
    """Tick labels and titles keep their room in any export: automatic margins on top of `MARGIN`."""
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)


def _level_traces(agg: pd.DataFrame, y_label: str, level_label: str, colours: Mapping[str, str] | None,
                  legend: bool = True) -> list[go.Scatter]:
    """Per reconstructor a shaded CI band and its line of estimates against the level (`metric_vs_level`'s traces)."""
    traces = []
    for recon, rows in _by_reconstructor(agg.sort_values("level"), colours):
        colour = _colour(recon, colours)
        x = rows["level"].to_numpy()
        traces.append(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([rows.ci_high.to_numpy(), rows.ci_low.to_numpy()[::-1]]),
                                 fill="toself", fillcolor=_rgba(colour, 0.18), line=dict(width=0), mode="lines",
                                 hoverinfo="skip", showlegend=False, legendgroup=recon))
        traces.append(go.Scatter(x=x, y=rows.estimate, mode="lines+markers", name=recon, legendgroup=recon,
                                 line=dict(color=colour), showlegend=legend,
                                 customdata=np.stack([rows.ci_low, rows.ci_high], axis=1),
                                 hovertemplate=f"{recon}<br>{level_label} %{{x:g}}<br>{y_label} %{{y:.3f}}"
                                               " [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>"))
    return traces


def _level_axis(agg: pd.DataFrame, level_label: str, higher_is_worse: bool) -> dict:
    """A level x axis: log, ticks at the stored levels, the most degraded level on the right."""
    ticks = sorted(agg["level"].unique())
    return dict(type="log", autorange=True if higher_is_worse else "reversed",
                title=f"{level_label}, more degraded to the right", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


def metric_vs_level(agg: pd.DataFrame, metric: str, title: str, y_label: str, level_label: str,
                    baseline: pd.Series | None = None, higher_is_worse: bool = False,
                    colours: Mapping[str, str] | None = None,
                    reference: tuple[float, str] | None = None) -> go.Figure:
    """One line per reconstructor with a shaded CI band; x = level on a log axis, most degraded to the right.

    `agg` holds rows of one metric (attribute 'all'); `baseline` is the clean-image row, drawn dashed;
    `reference` (value, text) is a target the metric should reach (0.95 coverage), drawn dotted.
    """
    fig = go.Figure(_level_traces(agg, y_label, level_label, colours))
    if baseline is not None and not np.isnan(baseline.estimate):
        fig.add_hline(y=baseline.estimate, line_dash="dash", line_color=CLEAN_COLOUR,
                      annotation_text=f"clean images {baseline.estimate:.3f}", annotation_position="top left")
    if reference is not None:
        fig.add_hline(y=reference[0], line_dash="dot", line_color="black", annotation_text=reference[1],
                      annotation_position="bottom left")
    fig.update_xaxes(**_level_axis(agg, level_label, higher_is_worse))
    fig.update_yaxes(title=y_label)
    fig.update_layout(title=title, height=380, margin=MARGIN, legend_title="reconstructor")
    _axes(fig)
    return fig


DODGE = 0.6
"""Forest plots: the reconstructors of one group spread over this share of the space between groups."""


def group_forest(agg: pd.DataFrame, title: str, x_label: str, colours: Mapping[str, str] | None = None,
                 legend_title: str = "reconstructor") -> go.Figure:
    """Per-group estimates with CI whiskers, one colour per reconstructor (rows: metric of one attribute).

    Groups are rows from the top; each reconstructor sits at its own small vertical offset within
    the row, so points never overlap and x stays exactly the stored estimate. (Plotly's own
    `scattermode='group'` offsets along x for a horizontal layout: it moved points off their values.)
    """
    groups = sorted({str(g) for g in agg.grp})  # the same order on every forest plot
    traces = _by_reconstructor(agg, colours)
    step = DODGE / len(traces) if len(traces) > 1 else 0.0
    fig = go.Figure()
    for k, (recon, rows) in enumerate(traces):
        offset = (k - (len(traces) - 1) / 2) * step
        fig.add_trace(go.Scatter(
            x=rows.estimate, y=[groups.index(str(g)) + offset for g in rows.grp], mode="markers", name=recon,
            marker=dict(color=_colour(recon, colours), size=10),
            error_x=dict(type="data", symmetric=False, array=rows.ci_high - rows.estimate,
                         arrayminus=rows.estimate - rows.ci_low),
            customdata=np.stack([rows.grp.astype(str), rows.n, rows.ci_low, rows.ci_high], axis=1),
            hovertemplate=f"{recon} · %{{customdata[0]}}: %{{x:.3f}} [%{{customdata[2]:.3f}}, %{{customdata[3]:.3f}}]"
                          " · n=%{customdata[1]}<extra></extra>"))
    fig.update_yaxes(tickvals=list(range(len(groups))), ticktext=groups, range=[len(groups) - 0.5, -0.5],
                     zeroline=False, showgrid=False)
    fig.update_layout(title=title, height=max(300, 140 + 60 * len(groups)), margin=MARGIN, xaxis_title=x_label,
                      legend_title=legend_title)
    _axes(fig)
    return fig


def _gap_traces(agg: pd.DataFrame, colours: Mapping[str, str] | None, labels: Mapping[str, str] | None,
                legend: bool = True) -> list[go.Bar]:
    """One bar trace per reconstructor in its colour (x: the gap metrics, named by `labels`), with CI whiskers."""
    traces = []
    for recon, rows in _by_reconstructor(agg, colours):
        traces.append(go.Bar(x=[(labels or {}).get(str(m), str(m)) for m in rows.metric], y=rows.estimate, name=recon,
                             legendgroup=recon, showlegend=legend, marker=dict(color=_colour(recon, colours)),
                             error_y=dict(type="data", symmetric=False, array=rows.ci_high - rows.estimate,
                                          arrayminus=rows.estimate - rows.ci_low),
                             customdata=np.stack([rows.ci_low, rows.ci_high], axis=1),
                             hovertemplate=f"{recon} · %{{x}}: %{{y:.3f}}"
                                           " [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>"))
    return traces


def gap_bars(agg: pd.DataFrame, title: str, colours: Mapping[str, str] | None = None,
             labels: Mapping[str, str] | None = None, y_label: str = "gap between groups") -> go.Figure:
    """Gap metrics (rows: metric × reconstructor) as bars with CI whiskers, grouped by metric and coloured by
    reconstructor (its one colour on every chart); `labels` names the metrics in words."""
    fig = go.Figure(_gap_traces(agg, colours, labels))
    fig.add_hline(y=0, line_color="gray")
    fig.update_yaxes(title=y_label)
    fig.update_layout(title=title, barmode="group", height=320, margin=MARGIN, legend_title="reconstructor")
    _axes(fig)
    return fig


def slides_figure(quality: pd.DataFrame, task: pd.DataFrame, gaps: pd.DataFrame, titles: Sequence[str],
                  axes: Sequence[str], level_label: str, title: str, note: str,
                  baselines: Sequence[pd.Series | None] = (None, None), higher_is_worse: bool = False,
                  colours: Mapping[str, str] | None = None, gap_labels: Mapping[str, str] | None = None) -> go.Figure:
    """The figure for slides: image quality and the task against the level, and the subgroup gaps at one level,
    side by side in one 16:9 figure with its title and `note` (intervals and run) under it.

    `titles` and `axes` name the three panels and their y axes; `baselines` are the clean-image rows of
    the two curves (dashed). One legend: each reconstructor once, in its one colour.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=list(titles), column_widths=[0.33, 0.33, 0.34],
                        horizontal_spacing=0.08)
    for col, (rows, axis, baseline) in enumerate(zip((quality, task), axes[:2], baselines, strict=True), start=1):
        for trace in _level_traces(rows, axis, level_label, colours, legend=col == 1):
            fig.add_trace(trace, row=1, col=col)
        if baseline is not None and not np.isnan(baseline.estimate):
            fig.add_hline(y=baseline.estimate, line_dash="dash", line_color=CLEAN_COLOUR, row=1, col=col,
                          annotation_text=f"clean {baseline.estimate:.3f}", annotation_position="top left")
        axis_x = _level_axis(rows, level_label, higher_is_worse)
        fig.update_xaxes(**axis_x | {"title": axis_x["title"].replace(", ", ",<br>")}, row=1, col=col)
        fig.update_yaxes(title=axis, row=1, col=col)
    in_legend = {trace.name for trace in fig.data if trace.showlegend is not False}
    wrapped = {metric: "<br>".join(textwrap.wrap(text, 12)) for metric, text in (gap_labels or {}).items()}
    for trace in _gap_traces(gaps, colours, wrapped):
        fig.add_trace(trace.update(showlegend=trace.name not in in_legend), row=1, col=3)  # the clean road's bar
    fig.update_xaxes(tickangle=0, row=1, col=3)
    fig.add_hline(y=0, line_color="gray", row=1, col=3)
    fig.update_yaxes(title=axes[2], row=1, col=3)
    fig.update_layout(title=dict(text=f"{title}<br><sup>{note}</sup>", x=0.02, xanchor="left"), barmode="group",
                      height=SLIDES_SIZE[1],
                      font=dict(size=14), margin=dict(l=70, r=20, t=110, b=90), legend_title="reconstructor",
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    _axes(fig)
    return fig


def captioned(figure: go.Figure, note: str, title: str = "") -> go.Figure:
    """A copy of `figure` whose title carries `note` (intervals, run) under it, so a PNG of it says where it came
    from; `title` is used where the figure has none (an image grid). The figure itself is left as it was."""
    shown = go.Figure(figure)
    text = shown.layout.title.text or title
    top = (shown.layout.margin.t if shown.layout.margin.t is not None else MARGIN["t"]) + (24 if text else 48)
    shown.update_layout(title_text=f"{text}<br><sup>{note}</sup>" if text else f"<sup>{note}</sup>", margin_t=top)
    return shown


OUTLINE_COLOURS = {"truth": "#00c853", "prediction": "#ff1744"}
SCALES = {"image": ([[0.0, "#000000"], [1.0, "#ffffff"]], 1.0, ""), "error": (ERROR_SCALE, ERROR_MAX, "|error|"),
          "map": (sequential.Viridis, 1.0, "attribution")}
"""Panel kind → (colour scale, top of the scale, colour-bar title); every scale starts at 0."""


def _lookup(scale: list) -> np.ndarray:
    """(256, 3) uint8 colours of a plotly colour scale, for painting a panel's pixels server-side."""
    colours = sample_colorscale(scale, list(np.linspace(0, 1, 256)))
    return np.array([[round(float(c)) for c in rgb[rgb.index("(") + 1:-1].split(",")] for rgb in colours],
                    dtype=np.uint8)


LOOKUPS = {kind: _lookup(scale) for kind, (scale, _, _) in SCALES.items()}


def panel_png(pixels: np.ndarray, kind: str) -> str:
    """A panel's pixels painted with its kind's colour scale (0 → the scale's first colour), as a PNG data URI.

    Images go to the browser as PNG, not as heat-map arrays: a 128 px float panel is ~87 kB of
    JSON and is recoloured by plotly.js on every draw; its PNG is a few kB and is drawn as is.
    """
    _, top, _ = SCALES[kind]
    index = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float64)) / top * 255, 0, 255).round().astype(np.uint8)
    painted = Image.fromarray(index)  # one byte a pixel, the scale as the PNG's palette
    painted.putpalette(LOOKUPS[kind].tobytes())
    buffer = io.BytesIO()
    painted.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_grid(panels: list[tuple], columns: int) -> go.Figure:
    """Images side by side with shared (synchronised) zoom, and a colour bar for error and attribution maps.

    Each panel is (title, pixels, kind) or (title, pixels, kind, outlines) where outlines maps
    'truth' / 'prediction' to a binary mask drawn as a contour (green truth, red prediction).
    kind 'image': gray in [0, 1]; 'error': absolute error, inferno from black, 0–0.25; 'map':
    attribution, viridis, 0–1; 'blank': an empty cell (pixels None) that keeps rows aligned.
    Pixels are sent as PNG images (`panel_png`); a colour bar is an invisible marker trace's.
    """
    rows = int(np.ceil(len(panels) / columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[p[0] for p in panels],
                        shared_xaxes="all", shared_yaxes="all", horizontal_spacing=0.02, vertical_spacing=0.08)
    shown_legend, bars = set(), {}
    for k, (title, pixels, kind, *rest) in enumerate(panels):
        r, c = divmod(k, columns)
        if kind == "blank":
            fig.update_xaxes(visible=False, row=r + 1, col=c + 1)
            fig.update_yaxes(visible=False, row=r + 1, col=c + 1)
            continue
        fig.add_trace(go.Image(source=panel_png(pixels, kind), hoverinfo="x+y", name=title), row=r + 1, col=c + 1)
        scale, top, bar_title = SCALES[kind]
        if bar_title and kind not in bars:  # one bar per kind, beside the first row that holds it
            domain = fig.get_subplot(r + 1, c + 1).yaxis.domain
            middle = (domain[0] + domain[1]) / 2
            beside = sum(b["y"] == middle for b in bars.values())  # bars of the same row
            bars[kind] = dict(title=bar_title, y=middle, len=domain[1] - domain[0], x=1.01 + 0.07 * beside,
                              thickness=12)
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                                     marker=dict(color=[0.0], colorscale=scale, cmin=0, cmax=top, showscale=True,
                                                 colorbar=bars[kind])), row=r + 1, col=c + 1)
        for name, mask in (rest[0] if rest else {}).items():
            if mask is None or not np.any(mask):
                continue
            colour = OUTLINE_COLOURS[name]
            fig.add_trace(go.Contour(z=np.asarray(mask, dtype=np.uint8), showscale=False, hoverinfo="skip",
                                     contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                                     line=dict(color=colour, width=2), name=f"tumour: {name}",
                                     showlegend=name not in shown_legend, legendgroup=name),
                          row=r + 1, col=c + 1)
            shown_legend.add(name)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                     autorange="reversed")
    fig.update_annotations(font_size=12)
    fig.update_layout(height=260 * rows + 40, margin=dict(l=5, r=75 if bars else 5, t=40, b=5),
                      legend=dict(orientation="h", y=-0.02), plot_bgcolor="rgba(0,0,0,0)")
    return fig


def added_heatmap(frame: pd.DataFrame, title: str, alpha: float = 0.05, higher_is_worse: bool = False,
                  level_label: str = "level", flagged: Mapping[tuple[str, float], str] | None = None) -> go.Figure:
    """Reconstructor × level grid of an added-bias metric, the most degraded level on the right.

    ★ marks q < alpha; a `flagged` (reconstructor, level) cell, where a rate behind the gap sits at
    the same bound (0 or 1) in every group, is left uncoloured and marked ⚠ (its reason on hover):
    a smaller gap there is no sign of fairness. The colour range is set by the widest interval
    bound (at least ±0.1), not by the largest estimate, so small cells with wide intervals stay pale.
    """
    flagged = flagged or {}
    grid = frame.pivot_table(index="reconstructor", columns="level", values="estimate", observed=True)
    q = frame.pivot_table(index="reconstructor", columns="level", values="q_value", observed=True).reindex_like(grid)
    levels = sorted(grid.columns, reverse=not higher_is_worse)
    grid, q = grid[levels], q[levels]
    text = [[("" if np.isnan(v) else f"{v:+.3f}") + (" ★" if (qq == qq and qq < alpha) else "")
             + (" ⚠" if (str(recon), float(lv)) in flagged else "")
             for lv, v, qq in zip(levels, row_v, row_q, strict=True)]
            for recon, row_v, row_q in zip(grid.index, grid.values, q.values, strict=True)]
    bounds = np.abs(frame[["estimate", "ci_low", "ci_high"]].to_numpy(dtype=float))
    limit = max(0.1, float(np.nanmax(bounds))) if np.isfinite(bounds).any() else 1.0
    shown = np.array([[np.nan if (str(r), float(lv)) in flagged else v for lv, v in zip(levels, row, strict=True)]
                      for r, row in zip(grid.index, grid.values, strict=True)])
    why = [[flagged.get((str(r), float(lv)), "") for lv in levels] for r in grid.index]
    fig = go.Figure(go.Heatmap(z=shown, x=[f"{lv:g}" for lv in levels], y=[str(r) for r in grid.index],
                               text=text, texttemplate="%{text}", colorscale="RdBu_r", zmid=0, zmin=-limit,
                               zmax=limit, colorbar=dict(title="added"), customdata=why,
                               hovertemplate="%{y} at %{x}: %{text} %{customdata}<extra></extra>"))
    fig.update_xaxes(type="category", title=f"{level_label}, more degraded to the right")
    fig.update_layout(title=title, height=160 + 60 * len(grid.index), margin=MARGIN)
    _axes(fig)
    return fig


def quality_vs_task(cells: pd.DataFrame, x_label: str, y_label: str, title: str,
                    colours: Mapping[str, str] | None = None) -> go.Figure:
    """One point per (reconstructor, level) cell: image quality against the task metric."""
    fig = go.Figure()
    for recon, rows in _by_reconstructor(cells, colours):
        fig.add_trace(go.Scatter(x=rows.x, y=rows.y, mode="markers+text", name=recon,
                                 text=[f"{lv:g}" for lv in rows.level], textposition="top center",
                                 marker=dict(size=10, color=_colour(recon, colours)),
                                 error_y=dict(type="data", symmetric=False, array=rows.y_high - rows.y,
                                              arrayminus=rows.y - rows.y_low)))
    fig.update_layout(title=title, height=380, xaxis_title=x_label, yaxis_title=y_label, margin=MARGIN,
                      legend_title="reconstructor")
    _axes(fig)
    return fig


PARETO_RING = dict(symbol="circle-open", size=22, color="black", line=dict(width=2))
"""How a Pareto-optimal point is marked on the mitigation frontier: a black ring around it."""


def mitigation_frontier(frame: pd.DataFrame, title: str, x_label: str, y_label: str, level_label: str,
                        colours: Mapping[str, str] | None = None, columns: int = 3) -> go.Figure:
    """MEDFAIR-style trade-off: per level a panel of fairness gap (x, smaller is fairer) against task (y, higher is
    better), one point per reconstructor with both intervals as error bars.

    `frame` has `results.FRONTIER_COLUMNS`, levels in the order the panels take. A base (plain training) is a
    circle, a variant a diamond joined to its base by a thin gray line; Pareto-optimal points at their level
    wear a black ring, and the front through them is dotted. Panels wrap after `columns`.
    """
    levels = list(dict.fromkeys(frame.level))
    cols = max(1, min(columns, len(levels)))
    rows = max(1, int(np.ceil(len(levels) / cols)))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{level_label} {lv:g}" for lv in levels],
                        shared_yaxes=True, horizontal_spacing=0.06, vertical_spacing=0.16)
    legend: set[str] = set()
    for k, level in enumerate(levels):
        at, where = frame[frame.level == level], dict(row=k // cols + 1, col=k % cols + 1)
        points = at.set_index("reconstructor")
        links_x, links_y = [], []
        for recon, base in zip(at.reconstructor, at.base, strict=True):
            if recon != base and base in points.index:
                links_x += [points.gap[base], points.gap[recon], None]
                links_y += [points.task[base], points.task[recon], None]
        if links_x:
            fig.add_trace(go.Scatter(x=links_x, y=links_y, mode="lines", line=dict(color="lightgray", width=1),
                                     hoverinfo="skip", showlegend=False), **where)
        for recon, rows_r in _by_reconstructor(at, colours):
            variant = bool((rows_r.reconstructor != rows_r.base).all())
            fig.add_trace(go.Scatter(
                x=rows_r.gap, y=rows_r.task, mode="markers", name=recon, legendgroup=recon,
                showlegend=recon not in legend,
                marker=dict(color=_colour(recon, colours), size=12, symbol="diamond" if variant else "circle"),
                error_x=dict(type="data", symmetric=False, array=rows_r.gap_high - rows_r.gap,
                             arrayminus=rows_r.gap - rows_r.gap_low, thickness=1),
                error_y=dict(type="data", symmetric=False, array=rows_r.task_high - rows_r.task,
                             arrayminus=rows_r.task - rows_r.task_low, thickness=1),
                customdata=np.stack([rows_r.strategy, rows_r.gap_low, rows_r.gap_high, rows_r.task_low,
                                     rows_r.task_high], axis=1),
                hovertemplate=f"{recon} (%{{customdata[0]}}) at {level:g}<br>{x_label} %{{x:.3f}} "
                              f"[%{{customdata[1]:.3f}}, %{{customdata[2]:.3f}}]<br>{y_label} %{{y:.3f}} "
                              "[%{customdata[3]:.3f}, %{customdata[4]:.3f}]<extra></extra>"), **where)
            legend.add(recon)
        front = at[at.pareto].sort_values("gap")
        if len(front):
            fig.add_trace(go.Scatter(x=front.gap, y=front.task, mode="lines+markers", name="Pareto-optimal",
                                     legendgroup="pareto", showlegend="pareto" not in legend,
                                     line=dict(color="black", dash="dot", width=1, shape="hv"), marker=PARETO_RING,
                                     hoverinfo="skip"), **where)
            legend.add("pareto")
        fig.update_xaxes(title=x_label, **where)
    fig.update_yaxes(title=y_label, col=1)
    fig.update_annotations(font_size=13)
    fig.update_layout(title=title, height=190 + 330 * rows, margin=MARGIN, legend_title="reconstructor",
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    _axes(fig)
    return fig


def change_forest(frame: pd.DataFrame, title: str, x_label: str, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Changes of one metric (variant − base) with CI whiskers: rows are `grp`, one colour per reconstructor, and
    a line at 0 (no change)."""
    fig = group_forest(frame, title, x_label, colours, legend_title="variant")
    fig.add_vline(x=0, line_color="gray", line_dash="dash")
    fig.update_layout(height=fig.layout.height + 50,
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    return fig


EVERYONE_COLOUR = "rgb(60, 60, 60)"
"""Everyone (attribute 'all') on a per-group chart: dark gray, so the groups keep the palette."""


def calibration_plot(curve: pd.DataFrame, n_samples: int, title: str) -> go.Figure:
    """A sampler's calibration curve per group: RMS error of the posterior mean against the mean predicted std.

    `curve` has the columns of `fairness.calibration.CURVE_COLUMNS` for everyone and the groups of
    one attribute. Log axes (the std bins are log-spaced); the dotted line is a calibrated posterior
    of `n_samples` draws, rmse = std·√(1 + 1/n): points above it are overconfident, below it
    underconfident. Markers grow with the pixels behind them.
    """
    fig = go.Figure()
    groups = list(dict.fromkeys(str(g) for g in curve.grp))
    palette = iter(PALETTE)
    for grp in groups:
        rows = curve[curve.grp.astype(str) == grp].sort_values("predicted_std")
        everyone = (rows.attribute == "all").all()
        name = "everyone" if everyone else grp
        share = rows.pixels / max(float(rows.pixels.sum()), 1.0)
        fig.add_trace(go.Scatter(
            x=rows.predicted_std, y=rows.rmse, mode="lines+markers", name=name,
            line=dict(color=EVERYONE_COLOUR if everyone else next(palette), width=3 if everyone else 2),
            marker=dict(size=(6 + 14 * np.sqrt(share)).tolist()),
            customdata=np.stack([rows.pixels, rows.images], axis=1),
            hovertemplate=f"{name}: std %{{x:.4f}} → RMS error %{{y:.4f}}"
                          " · %{customdata[0]:.0f} pixels of %{customdata[1]} images<extra></extra>"))
    positive = curve[(curve.predicted_std > 0) & (curve.rmse > 0)]
    if len(positive):
        low = float(min(positive.predicted_std.min(), positive.rmse.min() / np.sqrt(1 + 1 / n_samples)))
        high = float(max(positive.predicted_std.max(), positive.rmse.max()))
        xs = np.geomspace(low, high, 20)
        fig.add_trace(go.Scatter(x=xs, y=xs * np.sqrt(1 + 1 / n_samples), mode="lines", hoverinfo="skip",
                                 name=f"calibrated ({n_samples} samples)", line=dict(color="black", dash="dot")))
    fig.update_xaxes(type="log", title="predicted per-pixel std (mean in the bin)")
    fig.update_yaxes(type="log", title="RMS error of the posterior mean")
    fig.update_layout(title=title, height=420, margin=MARGIN, legend_title="group")
    _axes(fig)
    return fig
