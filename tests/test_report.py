"""The lab-meeting report and the CLI report: one read model, correct for each modality."""

from __future__ import annotations

import re

from recon_core import results
from recon_core.cli import main
from recon_core.report import build_report


def test_report_is_self_contained_and_complete(built_store):
    store, key, _ = built_store
    page = build_report(store, key, ["none", "unet"], [3000.0, 300.0], "sex", 300.0)
    assert page.startswith("<!doctype html>") and page.count("plotly-graph-div") >= 3
    assert page.count("data:image/png;base64,") >= 3  # clean, degraded, reconstructions of each example
    assert "Sensitivity (TPR) difference added" in page and "Does image quality predict the task?" in page
    assert "Equal-opportunity gap (max − min TPR) added" in page  # the folded gap stays, as a descriptive number
    assert "Test families of this run" in page and "primary" in page and "Benjamini–Hochberg" in page
    assert "Task: mean AUROC" in page and '"autorange":"reversed"' in page  # dose falls to the right
    # correlations within each level first, the pooled ones last, named as confounded by the level
    assert page.index("<td>within levels</td>") < page.index("<td>level 3000</td>") < page.index(
        "<td>level 300</td>") < page.index("<td>pooled (confounded by level)</td>")
    assert "It mixes levels" in page and "The reconstructors are the units" in page
    # nothing is fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?://""", page)


def test_mri_report_leads_with_dice_per_patient_and_the_dice_gap(mri_store):
    store, key, _ = mri_store
    page = build_report(store, key, ["zero_filled", "unet"], [4.0, 8.0], "sex")
    assert "Task: tumour Dice (mean per patient)" in page and "Task: grade AUROC" in page
    assert '"autorange":"reversed"' not in page  # acceleration grows to the right: the axis is not flipped
    assert re.search(r"acceleration \((×|\\u00d7)\), more degraded to the right", page)  # plotly escapes ×
    assert re.search(r"Tumour Dice difference added \(F (−|\\u2212) M\)", page)  # MRI leads: the signed Dice change
    assert "volume PSNR (dB)" in page and "patients (all of a patient" in page
    assert "Added by reconstruction at 8 ×" in page  # the most accelerated level by default
    assert ">nan<" not in page.lower()
    assert page.count("data:image/png;base64,") >= 3


def test_cli_report_of_an_mri_run_reads_its_modality_from_the_store(mri_store, capsys):
    store, key, _ = mri_store
    assert main(["report", "--store", str(store.path), "--run", key]) == 0
    out = capsys.readouterr().out
    assert "MRI (accelerated)" in out and "acceleration" in out
    assert "Dice" in out and "volume PSNR (dB)" in out and "grade AUROC" in out and "Dice gap added" in out
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows[0][:2] == ["clean", "—"]
    zero_filled = [r[1] for r in rows if r[0] == "zero_filled"]
    assert zero_filled == ["4", "8"]  # mildest first


def test_report_includes_the_posterior_calibration_and_the_hallucination_check(built_store):
    store, key, _ = built_store
    page = build_report(store, key, ["unet", "diffusion"], [3000.0, 300.0], "sex", 300.0)
    section = page[page.index("<h2>Calibration of the posterior spread</h2>"):page.index("<h2>Hallucination check")]
    assert "Spread–error rank correlation" in section and "95 % interval coverage" in section
    assert "Sample flip rate" in section and "<h3>By sex</h3>" in section
    assert "Calibration curve: diffusion at 300" in section and "calibrated (2 samples)" in section
    number = r"[−-]?[0-9.]+"  # a rank correlation may be below 0
    assert re.search(rf"<td>diffusion</td>\s*<td>3000</td>\s*<td>{number} \[{number}, {number}\]</td>", section)
    assert "sample_flip" not in re.sub(r"<script.*?</script>", "", section, flags=re.S)
    check = page[page.index("<h2>Hallucination check"):page.index("<h2>Does image quality")]
    assert "residual map" in check and "matched filter at the known site" in check
    assert "known lesion erased" in check and "lesion invented where none was" in check
    assert "Calibration of the posterior spread" not in build_report(store, key, ["unet"], [300.0])  # no sampler


def test_mri_report_without_a_sampler_has_no_calibration_section(mri_store):
    store, key, _ = mri_store
    page = build_report(store, key, ["zero_filled", "unet"], [4.0, 8.0], "sex")
    assert "Calibration of the posterior spread" not in page and "<h2>Hallucination check" in page


def test_report_has_a_mitigation_section_only_when_variants_are_chosen(built_store):
    """Issue 12: the chosen variants' paired changes with verdicts and the Pareto picture; absent without variants."""
    store, key, _ = built_store
    variants = results.variants(results.run_view(store, key).reconstructors)
    page = build_report(store, key, ["unet", *variants], [3000.0, 300.0], "sex", 300.0)
    section = page[page.index("<h2>Mitigation"):page.index("<h2>Hallucination check")]
    assert "<th>verdict</th>" in section and "Pareto picture" in section and "Pareto-optimal" in section
    assert "plotly-graph-div" in section and "paired" in section
    effects = results.mitigation_effects(store, key)
    shown = results.headline_effects(effects[effects.variant.isin(variants)], results.run_view(store, key), "sex")
    assert section.count("<tr>") == len(shown) + len(results.mitigation_frontier(store, key, "sex"))  # body rows
    assert all(f"<td>{v}</td>" in section for v in variants)
    assert "_change" not in re.sub(r"<script.*?</script>", "", section, flags=re.S)  # human names only
    assert "<h2>Mitigation" not in build_report(store, key, ["none", "unet"], [300.0])
