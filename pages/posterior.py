"""Uncertainty & hallucinations: is a sampler's spread calibrated, do its samples flip the diagnosis, and how
often does reconstruction erase a known lesion or invent one, by subgroup."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import page_run, reconstructed_cells, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import exports, results
from recon_core.metrics import catalogue

ensure_routed("pages/posterior.py")
KIND_COLOURS = {"erased": "#d62728", "invented": "#7f7f7f"}  # kinds of change, not reconstructors
KIND_TEXT = {"erased": "known lesion erased", "invented": "lesion invented where none was"}


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    """A CSV download of a table shown on the page, built only when clicked."""
    st.download_button(f"Download {name} (CSV)", lambda: frame.to_csv(index=False).encode(), f"{name}.csv",
                       "text/csv", key=key, on_click="ignore")


def by_level(rows: pd.DataFrame) -> pd.DataFrame:
    """Posterior rows with each (sampler, level) as its own trace of a forest plot ('diffusion at 300')."""
    return rows.assign(reconstructor=[f"{r} at {lv:g}" for r, lv in zip(rows.reconstructor, rows.level, strict=True)])


st.title("Uncertainty & hallucinations")
run = page_run()
key = run.key
reconstructed_cells(key)
agg = data.aggregates(key)
choice = sidebar_choices(agg, run)
level, attribute = choice.level, choice.attribute
levels = run.mildest_first(choice.levels)
unit = run.level.unit
ci = exports.ci_text(data.ci_level(key))  # the run's interval level, as titles and captions write it
samplers = [s for s in results.samplers(agg) if s in choice.reconstructors]

st.header("Calibration of the posterior spread")
if not results.samplers(agg):
    st.info("No reconstructor of this run draws several posterior samples, so there is no spread to calibrate and "
            "no sample flips to count. A sampler (the diffusion reconstructor with reconstructors.diffusion."
            "n_samples ≥ 2 in the config) stores them with each of its cells.")
elif not samplers:
    st.info("None of the reconstructors picked in the sidebar draws posterior samples; this run's samplers: "
            + ", ".join(results.samplers(agg)) + ".")
else:
    overall = results.posterior_table(agg, "all")
    overall = overall[overall.reconstructor.isin(samplers) & overall.level.isin(choice.levels)]
    left, right = st.columns(2)
    for where, metric, reference in ((left, "spread_error_rho", None),
                                     (right, "interval_coverage", (0.95, "calibrated: 0.95"))):
        rows = overall[overall.metric == metric]
        chart(where, f"{metric.replace('_', '-')}-by-level", cached_plot(
            "metric_vs_level", rows, metric, f"{catalogue.label(metric)}, everyone ({ci})",
            catalogue.label(metric), run.level_label, None, higher_is_worse=run.level.higher_is_worse,
            colours=run.colours, reference=reference), width="stretch", run=run)
    table = results.posterior_overview(agg, "all", samplers, levels)
    show(table, hide_index=True, width="stretch")
    st.caption("\n\n".join(results.POSTERIOR_NOTES))

    st.subheader(f"By {attribute}")
    present = [m for m in results.POSTERIOR_METRICS if m in set(overall.metric)]
    metric = st.radio("Statistic", present, format_func=catalogue.label, horizontal=True,
                      key=scoped("post_metric", key))
    def forest(name: str, shown: str) -> None:
        """One posterior metric by group, per sampler and level, with its CIs."""
        rows = results.posterior_table(agg, attribute)
        rows = rows[rows.reconstructor.isin(samplers) & rows.level.isin(choice.levels) & (rows.metric == shown)]
        chart(st, name, cached_plot("group_forest", by_level(rows),
                                    f"{catalogue.label(shown)} by {attribute} ({ci})",
                                    catalogue.label(shown), legend_title="sampler at level"), width="stretch", run=run)

    forest("posterior-by-group", metric)
    by_group = results.posterior_overview(agg, attribute, samplers, levels)
    show(by_group, hide_index=True, width="stretch")
    download(by_group, f"posterior-by-{attribute}", "dl_post_groups")

    st.subheader(f"Calibration curve at {level:g} {unit}")
    sampler = st.selectbox("Sampler", samplers, key=scoped("post_sampler", key)) if len(samplers) > 1 \
        else samplers[0]
    draws = data.sample_count(key, sampler, float(level))
    curve = data.calibration_curve(key, sampler, float(level), (attribute,))
    if curve.empty or draws < 2:
        st.info(f"The store holds no calibration sums for {sampler} at {level:g} {unit}; pick another level in "
                "the sidebar.")
    else:
        chart(st, "calibration-curve", cached_plot(
            "calibration_plot", curve, draws,
            f"{sampler} at {level:g} {unit}: RMS error against predicted std, by {attribute}"), width="stretch",
              run=run)
        st.caption(results.CURVE_NOTE)

    flip_metric = next((m for m in ("sample_dice_flip", "sample_flip") if m in set(overall.metric)
                        and overall.loc[overall.metric == m, "estimate"].notna().any()), None)
    st.subheader("How often the posterior's samples change the diagnosis")
    if flip_metric is None:
        st.info("No sample flip rates are stored for these samplers.")
    else:
        forest("sample-flips", flip_metric)
        st.caption(catalogue.BY_NAME[flip_metric].description.capitalize() + ". The cases behind it, most "
                   "uncertain first, are on the Failure cases page.")

st.header("Hallucination check on known truth")
recons = choice.reconstructors
checks = {(r, lv): data.hallucination_rates(key, r, float(lv), (attribute,), ci_level=data.ci_level(key))
          for r in recons for lv in levels}
available = {cell: check for cell, check in checks.items() if not check.unavailable}
rules = next(iter(checks.values())).rules if checks else {}
if not available:
    reasons = sorted({check.unavailable for check in checks.values()})
    st.info(" ".join(reasons) if reasons else results.NO_SITES)
else:
    kind = st.radio("Count", list(KIND_TEXT), format_func=KIND_TEXT.get, horizontal=True,
                    key=scoped("post_kind", key))
    focus = [c.rates.assign(reconstructor=r) for (r, lv), c in available.items() if lv == level]
    rates = pd.concat(focus, ignore_index=True) if focus else pd.DataFrame()
    for where, (detector, rule) in zip(st.columns(len(rules)), rules.items(), strict=True):
        where.markdown(f"**Detector: {detector}.** Rule: {rule}.")
        if rates.empty:
            where.info(f"No reconstructor picked has hallucination rates at {level:g} {unit}.")
            continue
        shown = rates[(rates.detector == detector) & (rates.kind == kind)].rename(
            columns={"rate": "estimate", "of": "n"}).replace({"grp": {"all": "everyone"}})
        chart(where, f"hallucinations-{detector.replace(' ', '-')}", cached_plot(
            "group_forest", shown, f"{KIND_TEXT[kind].capitalize()} at {level:g} {unit} ({ci})", "rate",
            colours=run.colours), width="stretch", run=run)
    table = pd.concat([results.hallucination_rows(c, r, lv) for (r, lv), c in available.items()],
                      ignore_index=True)
    show(table, hide_index=True, width="stretch")
    download(table, f"hallucinations-by-{attribute}", "dl_halluc")
    st.caption("Erased: over the images with a known lesion that the detector finds on the clean image. Invented: "
               "over the images without a lesion (a sham site drawn the same way) where it finds nothing on the "
               f"clean image. Intervals: {ci}, bootstrap, resampling subjects within demographic cells.")
    missing = sorted({f"{r} at {lv:g}: {c.unavailable}" for (r, lv), c in checks.items() if c.unavailable})
    if missing:
        st.caption("Not checked: " + "; ".join(missing))
