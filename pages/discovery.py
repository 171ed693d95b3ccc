"""Weak subgroups: where reconstruction widens a stored group difference, ranked by how much it plausibly does; the
narrowings and the degraded-image reference counted apart; the selection effect."""

from __future__ import annotations

import streamlit as st

from pages.ui import data
from pages.ui.routing import ensure_routed
from pages.ui.sidebar import grouped_results, scoped, sidebar_choices
from pages.ui.tables import show
from recon_core import discovery, exports, results
from recon_core.tables import attribute_text

ensure_routed("pages/discovery.py")


@st.cache_data(show_spinner="Ranking the stored group differences…", max_entries=8)
def scanned(key: str, version: str, reference: tuple[str, ...]) -> discovery.Discovery:
    """Every candidate of the run, judged and ordered once per store version (filters then only narrow it)."""
    config = data.run_config(key)
    return discovery.discover(data.aggregates(key), discovery.run_minimums(config), exports.ci_level(config),
                              reference)


def size_rules(found: discovery.Discovery) -> None:
    """The size rules with the run's minima, and how many candidates they left out and why."""
    st.subheader("Size rules")
    st.caption(discovery.size_rules(found.minimums))
    st.caption(discovery.left_out_text(found))
    if len(found.left_out):
        show(found.left_out, hide_index=True)


st.title("Weak subgroups")
run, agg = grouped_results()
key = run.key
choice = sidebar_choices(agg, run)
if run.statistics_outdated:
    st.warning(results.OUTDATED)
one = st.toggle(f"Only subgroups by {attribute_text(choice.attribute).lower()} (the sidebar's choice)",
                key=scoped("disc_one_attribute", key))
found = discovery.select(scanned(key, data.version(), tuple(run.returns_degraded)), choice.reconstructors,
                         choice.levels, [choice.attribute] if one else None)
st.caption("Where does reconstruction add the largest group difference? Each stored change of a signed group "
           "difference (reconstructed − clean, paired) for each attribute or intersection, contrast, finding, "
           "reconstructor and level of the sidebar's choice is judged. " + discovery.ranking_rule(found.level)
           + " Nothing is recomputed: these are the stored statistics.")
for line in discovery.apart_text(found):
    st.caption(line)
if found.ranked.empty:
    st.info(discovery.selection_effect(found, run.level.unit)[0])
    size_rules(found)
    st.stop()
st.subheader(f"Widenings ranked by the {discovery.STATISTIC}, largest first")
if run.status != "done":
    st.caption(f"The run is {run.status}: q-values cover only the cells that finished (an incomplete family); they "
               "are recomputed when the run completes.")
show(discovery.table(found), hide_index=True, width="stretch",
     column_config={c: st.column_config.Column(help=h) for c, h in discovery.column_help(found.level).items()})
st.download_button("Download the ranking (CSV)", lambda: found.ranked[discovery.EXPORTED].to_csv(index=False).encode(),
                   "weak-subgroups.csv", "text/csv", key="dl_discovery", on_click="ignore")
with st.container(key="selection-effect"):
    st.subheader("The selection effect")
    for paragraph in discovery.selection_effect(found, run.level.unit):
        st.markdown(paragraph)
size_rules(found)
