"""Tables as the pages show them: human column names, and one line of help for each column header.

A stored id (`eodd_added`, `ci_low`, `image_id`) never heads a table a page shows: `human` names a
column (metrics by the catalogue's labels), `column_help` explains a shown header in one line (the
pages put it on hover), from the headers below or the catalogue's description of the metric.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from recon_core.metrics import catalogue
from recon_core.results import interval_text

NAMES = {
    "image_id": "image", "label": "finding", "kind": "decision", "target": "truth", "clean_score": "score on clean",
    "recon_score": "score on reconstruction", "change": "score change", "age_band": "age band",
    "dice_clean": "Dice on clean", "dice_recon": "Dice on reconstruction", "dice_drop": "Dice drop",
    "grp": "group", "config_hash": "run key", "cells_done": "cells done", "level_name": "level",
    "created_at": "created", "ci_low": "95 % CI low",
    "ci_high": "95 % CI high", "p_value": "p", "q_value": "q", "n_pos": "positives",
}
"""Stored column ids and their names on a page (metric ids are named by the catalogue)."""

HELP = {
    "reconstructor": "The reconstruction method; 'clean' is the diagnostic model on the undegraded images.",
    "road": "Which image the diagnostic model saw: the clean one, or a reconstruction.",
    "level": "The degradation level (X-ray: dose in photons/pixel, lower is noisier; MRI: acceleration ×).",
    "statistic": "What is measured; 'added' means reconstructed − clean, paired on the same units.",
    "finding": "The diagnostic finding (label); 'mean over findings' averages them.",
    "groups": "Which groups are compared: 'F − M' is the first group's value minus the second's.",
    "group": "The subgroup (sex, age band or both); 'everyone' is all units together.",
    "change [95 % CI]": "Reconstructed − clean, with its 95 % paired bootstrap interval.",
    "test": "p: bootstrap-normal p-value; q: Benjamini–Hochberg within the named test family.",
    "⚠ rate at a bound": "The rate behind this gap is 0 or 1 in every group: a collapse of the decision.",
    "family": "The pre-specified family of tests its q-values are corrected within (Benjamini–Hochberg).",
    "question": "What the family's tests ask.",
    "tests": "How many tests the family holds (tests that cannot reject are left out).",
    "q < 0.05": "How many of the family's tests have a Benjamini–Hochberg q-value below 0.05.",
    "scope": "Over which cells the correlation is taken: within levels, one level, or pooled.",
    "pair": "The image-quality metric and the task metric whose rankings are compared.",
    "attribute": "The demographic attribute the groups come from ('all': everyone).",
    "Spearman ρ [95 % CI]": "Rank correlation of quality with the task over the cells, with its 95 % interval.",
    "cells": "How many (reconstructor, level) cells the correlation is taken over.",
    "n": "How many statistical units (images, or patients on MRI) the estimate rests on.",
    "image": "The test image's id.",
    "decision": "How the reconstruction changed the call at the fixed threshold (lost, invented, same…).",
    "truth": "1: the finding is present; 0: absent.",
    "score on clean": "The classifier's probability on the clean image.",
    "score on reconstruction": "The classifier's probability on the reconstruction.",
    "score change": "Score on the reconstruction − score on the clean image.",
    "sex": "The subject's sex.",
    "age band": "The subject's age band.",
    "Dice on clean": "The segmenter's tumour Dice on the clean image.",
    "Dice on reconstruction": "The segmenter's tumour Dice on the reconstruction.",
    "Dice drop": "Dice on clean − Dice on reconstruction: how much tumour overlap was lost.",
    "what": "Which change of decision is counted.",
    "rate [95 % CI]": "Share of eligible cases with that change, with its 95 % bootstrap interval.",
    "cases": "Cases with that change / eligible cases.",
    "images": "Images with that change / eligible images.",
    "detector": "Which detector decides whether a lesion is found at its known site.",
    "reason": "Why the cell failed; starting the run again retries it.",
    "run key": "The run's config hash: every stored row carries it.",
    "modality": "The imaging modality of the run.",
    "status": "running, done, incomplete (some cells failed) or failed.",
    "cells done": "How many (reconstructor, level) cells have landed.",
    "seconds": "How long the run took.",
    "created": "When the run was first started.",
    "message": "The run's last message (why it stopped, which cells failed).",
    "name": "The study's name from its config.",
    "role": "What the model does in the study (reconstructor, classifier, segmenter).",
    "source": "How the model was loaded: TorchScript, Python entry point or MONAI bundle.",
    "location": "Where the model's file or factory is.",
    "SHA-256": "Hash of the model's files, shortened: part of the run's key.",
    "contract": "What Tandem hands the model and holds its output to.",
    "calls that differ from the reported": "Findings whose call on this sample differs from the reported one.",
    "variant": "A mitigation variant '<base>+<strategy>': its base fine-tuned against bias.",
    "strategy": "How the variant was fine-tuned ('plain training' for a base).",
    "base": "The plain-trained reconstructor the variant started from and is compared with.",
    "change vs base [95 % CI]": "Variant − base on the same units at the same level (paired), with its 95 % interval.",
    "verdict": "The change in words: no significant change (interval covers 0, or q ≥ 0.05), gap narrowed or "
               "widened, gain or cost.",
    "Pareto-optimal at its level": "✓: no other point at this level has a gap as small and a task as high.",
}
"""One line of help per shown column header (metric headers take the catalogue's description)."""


def attribute_text(attribute: str) -> str:
    """'sex×age_band' → 'Sex × age band': a subgroup attribute (or intersection) as a page names it."""
    return " × ".join(part.replace("_", " ") for part in attribute.split("×")).capitalize()


def human(column: str) -> str:
    """A stored column id as a page names it: 'image_id' → 'image', 'psnr' → 'PSNR (dB)'; other names unchanged."""
    if column in NAMES:
        return NAMES[column]
    try:
        catalogue.source(column)
    except KeyError:
        return column
    return catalogue.label(column)


def _metric_help() -> dict[str, str]:
    """{shown label: description} of every catalogue metric and its named gaps."""
    out = {catalogue.label(m.name): m.description for m in catalogue.CATALOGUE}
    out |= {label: f"{label.split(' (')[0]}, from {catalogue.BY_NAME[base].label}"
            for label, base in catalogue.NAMED_GAPS.values()}
    return out


METRIC_HELP = _metric_help()


def column_help(columns: Iterable[str]) -> dict[str, str]:
    """{column: one line saying what it holds} for the shown columns that have one (others are left out)."""
    out = {}
    for column in map(str, columns):
        text = HELP.get(column) or METRIC_HELP.get(column) or METRIC_HELP.get(column.split(" [")[0])
        if text:
            out[column] = text[0].upper() + text[1:]
    return out


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with human column names (and index name), for a page's table."""
    out = frame.rename(columns=human)
    if out.index.name:
        out.index.name = human(out.index.name)
    return out


FLIP_TEXT = {"lost": "finding lost (new false negative)", "invented": "finding invented (new false positive)"}


def flip_rate_rows(rates: pd.DataFrame) -> pd.DataFrame:
    """Flip rates (`fairness.flips.flip_rates`) as shown: what, group ('everyone' for all), 'rate [CI]', cases."""
    return pd.DataFrame({
        "what": [FLIP_TEXT.get(k, k) for k in rates.kind],
        "group": ["everyone" if a == "all" else str(g) for a, g in zip(rates.attribute, rates.grp, strict=True)],
        "rate [95 % CI]": [interval_text(e, lo, hi) for e, lo, hi in
                           zip(rates.rate, rates.ci_low, rates.ci_high, strict=True)],
        "cases": [f"{c} / {o}" for c, o in zip(rates.flips, rates.of, strict=True)]})
