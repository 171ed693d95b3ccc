"""Mitigation: each bias-mitigation variant against its plain-trained base (paired), and the fairness–task trade-off."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import data
from pages.ui.figures import cached_plot, chart
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import page_run, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import results
from recon_core.metrics import catalogue
from recon_core.tables import attribute_text

ensure_routed("pages/mitigation.py")


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    """A CSV download of a table shown on the page, built only when clicked."""
    st.download_button(f"Download {name} (CSV)", lambda: frame.to_csv(index=False).encode(), f"{name}.csv",
                       "text/csv", key=key, on_click="ignore")


st.title("Mitigation")
run = page_run()
key = run.key
agg = data.aggregates(key)
mitigated = results.variants([*run.reconstructors, *agg.reconstructor.unique()])
if not mitigated:
    st.info(results.NO_VARIANTS)
    st.code(results.VARIANT_EXAMPLE, language="yaml")
    st.stop()
if not set(mitigated) & set(agg.reconstructor):
    st.info(f"This run's variants ({', '.join(mitigated)}) have no finished cells yet; this page fills in as "
            "they land.")
    st.stop()

choice = sidebar_choices(agg, run)
attribute = choice.attribute
attr_text = attribute_text(attribute).lower()
shown = [v for v in mitigated if v in choice.reconstructors]
if not shown:
    st.warning("None of the reconstructors picked in the sidebar is a mitigation variant; this run's variants: "
               + ", ".join(mitigated) + ".")
    st.stop()
effects = data.mitigation_effects(key)
effects = effects[effects.variant.isin(shown) & effects.level.isin(choice.levels)]

st.subheader("Each variant against its plain-trained base (variant − base, paired)")
if effects.empty:
    st.info("The changes against each base are computed when the run has finished: once every variant's and "
            "base's cells have landed.")
else:
    every = st.toggle("Every statistic", key=scoped("mit_every", key),
                      help="Off: the headline statistics (label means, and each finding's change of the headline "
                           "difference); on: every stored statistic, finding and group.")
    shown_effects = results.headline_effects(effects, run, attribute, every)
    show(results.effects_table(shown_effects), hide_index=True, width="stretch",
         column_config={c: st.column_config.TextColumn(width="medium") for c in ("statistic", "verdict")})
    st.caption(results.MITIGATION_NOTE)
    tests = results.families(effects)
    if len(tests):
        show(tests, hide_index=True, width="stretch",
             column_config={"question": st.column_config.TextColumn(width="large")})
    download(effects, "mitigation-effects", "dl_mitigation")

st.subheader(f"Fairness against the task, by {attr_text}")
left, right = st.columns([2, 1])
gaps = {h.metric: h for h in run.gap_metrics}
gap = gaps[left.radio("Fairness gap", list(gaps), format_func=lambda g: gaps[g].title, horizontal=True,
                      key=scoped("mit_gap", key))]
tasks = {h.metric: h for h in run.tasks}
task = tasks[left.radio("Task", list(tasks), format_func=lambda t: tasks[t].axis, horizontal=True,
                        key=scoped("mit_task", key))] if len(tasks) > 1 else run.tasks[0]
frontier = data.mitigation_frontier(key, attribute, gap.metric, task.metric)
frontier = results.frontier_of(frontier, shown, choice.levels)
chart(left, "mitigation-frontier", cached_plot(
    "mitigation_frontier", frontier, f"Pareto picture by {attr_text}, at each level",
    f"{gap.axis} (smaller is fairer)", f"{task.axis} (higher is better)", run.level_label, colours=run.colours),
    width="stretch", run=run)
left.caption(results.FRONTIER_NOTE)
quality = effects[effects.metric.isin(["psnr", "ssim"]) & (effects.attribute == "all")]
for metric in ("psnr", "ssim"):
    rows = quality[quality.metric == metric]
    if rows.empty:
        continue
    rows = rows.assign(reconstructor=rows.variant, grp=[f"at {lv:g}" for lv in rows.level])
    chart(right, f"{metric}-change", cached_plot(
        "change_forest", rows, f"{catalogue.label(metric)}: variant − base",
        f"{catalogue.label(metric)} change", colours=run.colours), width="stretch", run=run)
if quality.empty:
    right.info("Image-quality changes show once the run has finished.")
show(results.frontier_table(frontier, gap, task), hide_index=True, width="stretch")
