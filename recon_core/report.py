"""One self-contained HTML page of a run's current selection, to share at a lab meeting.

Everything is inline (plotly.js once, example images as PNG data URIs): the file opens offline.
It draws from the same read model as the dashboard (`recon_core.results`), so the headline
curves, the level direction and the gap shown are the run's modality's own (Dice and a Dice
gap for MRI, mean AUROC and the equal-opportunity gap for X-ray).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from scipy import ndimage

from recon_core import exports, findings, plots, results
from recon_core.metrics import catalogue
from recon_core.store import CLEAN, Store, queries
from recon_core.tables import attribute_text

OUTLINES = {"mask_true": (0, 200, 83), "mask_pred": (255, 23, 68)}
"""Outline colours of the true (green) and predicted (red) masks, as on the dashboard."""


def _png(pixels: np.ndarray, masks: dict[str, np.ndarray] | None = None) -> str:
    """A gray image as a PNG data URI, with the outlines of any masks drawn in their colours."""
    gray = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    for kind, mask in (masks or {}).items():
        inside = np.asarray(mask) > 0.5
        rgb[inside & ~ndimage.binary_erosion(inside)] = OUTLINES[kind]
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—", border=0, classes="t")


def _examples(store: Store, run: results.RunView, reconstructors: Sequence[str], level: float) -> list[str]:
    """Up to three example images: clean, degraded and each reconstruction at `level`, with mask outlines."""
    parts = []
    clean_ex = queries.examples(store, run.key, CLEAN, 0.0)
    for image_id in sorted(clean_ex.image_id.unique())[:3]:
        mine = clean_ex[clean_ex.image_id == image_id].set_index("kind").pixels
        truth = {"mask_true": mine["mask_true"]} if "mask_true" in mine else {}
        cells = [("clean", _png(mine["clean"], truth | ({"mask_pred": mine["mask_pred"]} if "mask_pred" in mine
                                                        else {})))]
        for name in reconstructors:
            ex = queries.examples(store, run.key, name, float(level))
            ex = ex[ex.image_id == image_id].set_index("kind").pixels
            if ex.empty:
                continue
            predicted = truth | ({"mask_pred": ex["mask_pred"]} if "mask_pred" in ex else {})
            if len(cells) == 1:
                cells.append((f"degraded ({level:g})", _png(ex["degraded"], truth)))
            cells.append((name, _png(ex["reconstructed"], predicted)))
        parts.append(f"<h4>{html.escape(image_id)}</h4><div class='row'>" + "".join(
            f"<figure><img src='{uri}' width='192'><figcaption>{html.escape(t)}</figcaption></figure>"
            for t, uri in cells) + "</div>")
    return parts


def report_figures(agg: pd.DataFrame, run: results.RunView, reconstructors: Sequence[str],
                   levels: Sequence[float], attribute: str = "sex") -> list[tuple[str, go.Figure]]:
    """The report's charts from a run's aggregates: its headline curves and first gap's added-bias grid, each with
    the `recon_core.plots` builder that drew it (its name says how the chart's intervals are drawn)."""
    view = agg[agg.reconstructor.isin(reconstructors) & agg.level.isin(levels)]
    clean = agg[agg.reconstructor == CLEAN]
    worse = run.level.higher_is_worse
    figures = []
    for curve in run.curves:
        base = results.overall(clean, curve.metric, curve.label)
        rows = results.overall(view, curve.metric, curve.label)
        figures.append(("metric_vs_level", plots.metric_vs_level(
            rows, curve.metric, curve.title, curve.axis, run.level_label, base.iloc[0] if len(base) else None,
            higher_is_worse=worse, colours=run.colours)))
    figures += [("added_heatmap", figure) for figure in _added_heatmaps(view, run, attribute)]
    return figures


def slides_inputs(agg: pd.DataFrame, run: results.RunView, reconstructors: Sequence[str], levels: Sequence[float],
                  attribute: str, level: float, ci_level: float) -> dict:
    """The arguments of `plots.slides_figure` for a selection: the quality and first task curves over the levels,
    the gap metrics by `attribute` at `level` (the clean road's too), the titles and the note of the run.

    `level` need not be among `levels` (the curves'): its gaps are read from all of `agg`, as Overview's gap bars."""
    view = agg[agg.reconstructor.isin(reconstructors) & agg.level.isin(levels)]
    clean = agg[agg.reconstructor == CLEAN]
    quality, task = run.quality, run.tasks[0]
    at_level = pd.concat([clean, agg[agg.reconstructor.isin(reconstructors) & (agg.level == level)]])  # any level
    gaps = at_level[at_level.metric.isin([g.metric for g in run.gap_metrics]) & at_level.label.isin(["", "mean"])
                    & (at_level.attribute == attribute)]
    baselines = [results.overall(clean, c.metric, c.label) for c in (quality, task)]
    return dict(quality=results.overall(view, quality.metric, quality.label),
                task=results.overall(view, task.metric, task.label), gaps=gaps,
                titles=(quality.title, task.title,
                        f"Gaps by {attribute_text(attribute).lower()} at {level:g} {run.level.unit}"),
                axes=(quality.axis, task.axis, "gap between groups"), level_label=run.level_label,
                title=f"{run.title}: image quality, task and subgroup gaps",
                note=exports.note(run, "slides_figure", ci_level),
                baselines=tuple(b.iloc[0] if len(b) else None for b in baselines),
                higher_is_worse=run.level.higher_is_worse, colours=run.colours,
                gap_labels={g.metric: g.title for g in run.gap_metrics})


def _added_heatmaps(view: pd.DataFrame, run: results.RunView, attribute: str) -> list[go.Figure]:
    """The primary test's signed change per finding and contrast (a run stored before tests had families:
    its first gap's change), each cell starred by its q-value within its family; a finding without any estimate
    (too few cases in a group) gets no grid, only its row of dashes in the tables."""
    worse = run.level.higher_is_worse
    primary = view[(view.metric == run.primary_test) & (view.attribute == attribute) & (view.label != "mean")]
    if run.primary_test and len(primary):
        figures = []
        for (label, contrast), grid in primary.groupby(["label", "grp"], sort=True):
            if grid.estimate.isna().all():  # no estimate at any cell (too few cases): the table says so, no empty grid
                continue
            finding = f" · {label}" if label else ""
            figures.append(plots.added_heatmap(
                grid, f"{catalogue.label(run.primary_test)}{finding} ({contrast}), by {attribute}"
                "<br><sup>★ q < 0.05 within the primary family (Benjamini–Hochberg)</sup>", higher_is_worse=worse,
                level_label=run.level_label,
                flagged=results.collapsed_cells(view, run.primary_test, str(label), attribute)))
        if figures:  # else (no finding has an estimate) the first gap's change below
            return figures
    gap = run.gap_metrics[0]
    added = f"{gap.metric}_added"
    return [plots.added_heatmap(results.by_group(view, added, gap.label, attribute),
                                f"{gap.title} added, by {attribute}", higher_is_worse=worse,
                                level_label=run.level_label,
                                flagged=results.collapsed_cells(view, added, gap.label, attribute))]


def _findings(store: Store, agg: pd.DataFrame, run: results.RunView, reconstructors: Sequence[str],
              levels: Sequence[float], attribute: str, ci_level: float) -> str:
    """The 'What this study shows' panel (recon_core.findings) as a list, for the chosen reconstructors and levels,
    with the known-truth check of the most degraded of them (at the run's interval level)."""
    worst = run.worst_level(levels)
    checks = {r: results.hallucination_rates(store, run.key, r, worst, [attribute], ci_level=ci_level)
              for r in reconstructors}
    found = findings.study_findings(agg, run, reconstructors, levels, checks, attribute, ci_level)
    items = "".join(f"<li>{html.escape(f.text)}</li>" for f in found)
    return f"<h2>{findings.TITLE}</h2><ul class='findings'>{items}</ul>" if items else ""


def _correlations(store: Store, run: results.RunView) -> str:
    """The quality–task correlation table, by scope, and what each scope means; a constant side is said in words."""
    corr = queries.correlations(store, run.key)
    if corr.empty:
        return "<p>Fewer than three cells, or not finished yet.</p>"
    levels = run.mildest_first(sorted({float(s.removeprefix("level ")) for s in corr.scope if s.startswith("level ")}))
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in results.CORRELATION_NOTES)
    return _table(results.correlation_table(corr, levels)) + f"<ul>{notes}</ul>"


def _posterior(store: Store, run: results.RunView, agg: pd.DataFrame, reconstructors: Sequence[str],
               levels: Sequence[float], attribute: str, level: float) -> str:
    """The calibration section: per sampler and level, the spread's rank correlation, coverage and sample flips
    with CIs (everyone, then by `attribute`) and the calibration curve at `level`; '' for a run without a sampler."""
    samplers = [s for s in results.samplers(agg) if s in reconstructors]
    if not samplers:
        return ""
    ordered = run.mildest_first(levels)
    parts = ["<h2>Calibration of the posterior spread</h2>",
             _table(results.posterior_overview(agg, "all", samplers, ordered)),
             f"<h3>By {html.escape(attribute)}</h3>",
             _table(results.posterior_overview(agg, attribute, samplers, ordered)),
             "<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in results.POSTERIOR_NOTES) + "</ul>"]
    for sampler in samplers:
        draws = results.sample_count(store, run.key, sampler, level)
        curve = results.calibration_curve(store, run.key, sampler, level, [attribute])
        if curve.empty or draws < 2:
            continue
        figure = plots.calibration_plot(curve, draws, f"Calibration curve: {sampler} at {level:g} "
                                                      f"{run.level.unit}, by {attribute}")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=False))
    parts.append(f"<p>{html.escape(results.CURVE_NOTE)}</p>")
    return "".join(parts)


def _hallucinations(store: Store, run: results.RunView, reconstructors: Sequence[str], attribute: str,
                    level: float, ci_level: float) -> str:
    """The hallucination check at `level`: erased / invented rates per reconstructor, detector and group (intervals
    at the run's `ci_level`), with each detector's rule in words; where the cohort has no known lesion sites, why
    not."""
    checks = {r: results.hallucination_rates(store, run.key, r, level, [attribute], ci_level=ci_level)
              for r in reconstructors}
    shown = [results.hallucination_rows(c, r, level) for r, c in checks.items() if not c.unavailable]
    rules = next(iter(checks.values())).rules if checks else {}
    head = f"<h2>Hallucination check on known truth at {level:g} {html.escape(run.level.unit)}</h2>"
    if not shown:
        reasons = sorted({c.unavailable for c in checks.values()}) or [results.NO_SITES]
        return head + f"<p>{html.escape(' '.join(reasons))}</p>"
    detectors = "".join(f"<li><b>{html.escape(d)}</b>: {html.escape(rule)}</li>"
                        for d, rule in rules.items())
    return head + f"<ul>{detectors}</ul>" + _table(pd.concat(shown, ignore_index=True))


def _mitigation(store: Store, run: results.RunView, reconstructors: Sequence[str], levels: Sequence[float],
                attribute: str) -> str:
    """The mitigation section: each chosen variant's paired change against its base (headline rows, with verdicts)
    and the Pareto picture of the modality's first gap against its first task; '' when no variant is chosen."""
    shown = results.variants(reconstructors)
    if not shown:
        return ""
    effects = results.mitigation_effects(store, run.key)
    effects = results.headline_effects(effects[effects.variant.isin(shown) & effects.level.isin(levels)], run,
                                       attribute)
    gap, task = results.frontier_axes(run)
    frontier = results.frontier_of(results.mitigation_frontier(store, run.key, attribute), shown, levels)
    figure = plots.mitigation_frontier(frontier, f"Pareto picture by {attribute}, at each level",
                                       f"{gap.axis} (smaller is fairer)", f"{task.axis} (higher is better)",
                                       run.level_label, colours=run.colours)
    table = (_table(results.effects_table(effects)) if len(effects)
             else "<p>The changes against each base are computed when the run has finished.</p>")
    return (f"<h2>Mitigation: each variant against its plain-trained base</h2>{table}"
            f"<p>{html.escape(results.MITIGATION_NOTE)}</p>"
            + figure.to_html(full_html=False, include_plotlyjs=False)
            + _table(results.frontier_table(frontier, gap, task)) + f"<p>{html.escape(results.FRONTIER_NOTE)}</p>")


def build_report(store: Store, key: str, reconstructors: Sequence[str], levels: Sequence[float],
                 attribute: str = "sex", level: float | None = None) -> str:
    """HTML for the chosen reconstructors and levels: curves, fairness, the figure for slides, mitigation (chosen
    variants), the posterior's calibration (a run with a sampler), the hallucination check, correlations, examples.

    Each chart's title carries its interval note and the run, and its camera icon saves a 1920×1080 PNG."""
    run = results.run_view(store, key)
    agg = queries.aggregates(store, key)
    view = agg[agg.reconstructor.isin(reconstructors) & agg.level.isin(levels)]
    level = run.worst_level(levels) if level is None else level
    ci = exports.ci_level(queries.run_config(store, key))
    figures = [(f"report-chart-{i + 1}", plots.captioned(fig, exports.note(run, builder, ci)), plots.CHART_SIZE)
               for i, (builder, fig) in enumerate(report_figures(agg, run, reconstructors, levels, attribute))]
    figures.append(("slides", plots.slides_figure(**slides_inputs(agg, run, reconstructors, levels, attribute,
                                                                  level, ci)), plots.SLIDES_SIZE))
    charts = [fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False,
                          config=exports.png_options(exports.file_stem(run, name), size))
              for i, (name, fig, size) in enumerate(figures)]
    headline = results.headline_table(store, run, attribute)
    headline = headline[(headline.reconstructor == CLEAN)
                        | (headline.reconstructor.isin(reconstructors) & headline.level.isin(levels))]
    headline = headline.assign(level=["—" if r == CLEAN else f"{lv:g}"
                                      for r, lv in zip(headline.reconstructor, headline.level, strict=True)])
    added = results.added_table(results.added(view, run, level, attribute), agg[agg.level.isin([0.0, level])],
                                attribute, run.added_metrics)
    families = results.families(agg)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tandem report: {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
.row{{display:flex;gap:8px;flex-wrap:wrap}} figure{{margin:0;text-align:center}}
table.t{{border-collapse:collapse}} table.t td,table.t th{{padding:4px 8px;border-bottom:1px solid #ddd}}</style>
</head><body>
<h1>Tandem report: {html.escape(run.name)}</h1>
<p>{html.escape(run.title)} · run {html.escape(key)} · status {html.escape(run.status)} · reconstructors
{html.escape(', '.join(reconstructors))} · {html.escape(run.level.name)} levels
{html.escape(', '.join(f'{v:g}' for v in run.mildest_first(levels)))} {html.escape(run.level.unit)}.
Intervals are {exports.ci_text(ci)} over {html.escape(run.unit_text)} (paired bootstrap; a group's TPR and FPR: Wilson;
a finding's AUROC on an unclustered cohort: DeLong); "added" = reconstructed − clean.</p>
{_findings(store, agg, run, reconstructors, levels, attribute, ci)}
<h2>Per cell, with {exports.ci_text(ci)}</h2>
{_table(headline)}
{''.join(charts[:-1])}
<h2>Figure for slides</h2>
<p>The camera icon of the figure below saves it as a {exports.size_text(plots.SLIDES_SIZE)} with its title, intervals
and run; each chart above saves a {exports.size_text(plots.CHART_SIZE)}.</p>
{charts[-1]}
<h2>Added by reconstruction at {level:g} {html.escape(run.level.unit)}</h2>
{_table(added)}
<p>⚠: a rate at the same bound in every group; a gap that shrinks there is a collapse of the
fixed-threshold decision, not a fairer model. {html.escape(results.TEST_NOTE)}</p>
<h3>Test families of this run</h3>
{_table(families) if len(families) else "<p>Families and q-values are computed once the run is complete.</p>"}
{f"<p><b>{html.escape(results.OUTDATED)}</b></p>" if run.statistics_outdated else ""}
{_mitigation(store, run, reconstructors, levels, attribute)}
{_posterior(store, run, agg, reconstructors, levels, attribute, level)}
{_hallucinations(store, run, reconstructors, attribute, level, ci)}
<h2>Does image quality predict the task?</h2>
{_correlations(store, run)}
<h2>Example images at {level:g} {html.escape(run.level.unit)}</h2>
{''.join(_examples(store, run, reconstructors, level))}
</body></html>"""
