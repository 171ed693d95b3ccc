"""Weak subgroups: every stored added group difference ranked by how large it plausibly is; the selection effect."""

from __future__ import annotations

import streamlit as st

from pages.ui import data
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import attribute_label, page_run, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import discovery, results

ensure_routed("pages/discovery.py")

# the stored ids the CSV download carries (the table shows them by human names)
EXPORTED = ["rank", "reconstructor", "level", "attribute", "grp", "metric", "label", "statistic", "estimate", "ci_low",
            "ci_high", "p_value", "q_value", "family", "first", "other", "n_first", "n_other", "pos_first",
            "pos_other", "clean_diff", "recon_diff", "collapsed"]


@st.cache_data(show_spinner="Ranking the stored group differences…", max_entries=8)
def scanned(key: str, version: str) -> discovery.Discovery:
    """Every candidate of the run, judged and ordered once per store version (filters then only narrow it)."""
    return discovery.discover(data.aggregates(key), discovery.run_minimums(data.run_config(key)))


def size_rules(found: discovery.Discovery) -> None:
    """The size rules with the run's minima, and how many candidates they left out and why."""
    st.subheader("Size rules")
    st.caption(discovery.size_rules(found.minimums))
    st.caption(discovery.left_out_text(found))
    if len(found.left_out):
        show(found.left_out, hide_index=True)


st.title("Weak subgroups")
run = page_run()
key = run.key
agg = data.aggregates(key)
if not (agg.attribute != "all").any():
    st.info("This run has no per-group results yet: its cells are still landing.")
    st.stop()
choice = sidebar_choices(agg, run)
if run.statistics_outdated:
    st.warning(results.OUTDATED)
st.caption("Where does reconstruction add the largest group difference? Every stored change of a signed group "
           "difference (reconstructed − clean, paired) for each attribute or intersection, contrast, finding, "
           "reconstructor and level of the sidebar's choice is ranked by its "
           f"**{discovery.STATISTIC}**: the 95 % interval's bound nearest 0 when the interval excludes 0, else 0 "
           "(ties: the smaller q first). Nothing is recomputed: these are the stored statistics.")
one = st.toggle(f"Only subgroups by {attribute_label(choice.attribute).lower()} (the sidebar's choice)",
                key=scoped("disc_one_attribute", key))
found = discovery.select(scanned(key, data.version()), choice.reconstructors, choice.levels,
                         [choice.attribute] if one else None)
if found.ranked.empty:
    st.info(discovery.selection_effect(found, run.level.unit)[0])
    size_rules(found)
    st.stop()
st.subheader(f"Ranked by the {discovery.STATISTIC}, largest first")
if run.status != "done":
    st.caption(f"The run is {run.status}: q-values cover only the cells that finished (an incomplete family); they "
               "are recomputed when the run completes.")
show(discovery.table(found), hide_index=True, width="stretch",
     column_config={c: st.column_config.Column(help=h) for c, h in discovery.COLUMN_HELP.items()})
st.download_button("Download the ranking (CSV)", found.ranked[EXPORTED].to_csv(index=False).encode(),
                   "weak-subgroups.csv", "text/csv", key="dl_discovery")
with st.container(key="selection-effect"):
    st.subheader("The selection effect")
    for paragraph in discovery.selection_effect(found, run.level.unit):
        st.markdown(paragraph)
size_rules(found)
