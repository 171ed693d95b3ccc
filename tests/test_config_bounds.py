"""Every numeric config field at its bounds, and the malformed configs a hostile user tried: named errors only.

Each bad config is refused by the command line with exit status 2 and one line naming the key
(or the file), before the store is touched: the store's tables hash the same before and after.
"""

from __future__ import annotations

import copy
import math
import re
import shutil

import pytest
import yaml

from recon_core.cli import main
from recon_core.config import BOUNDS, ConfigError, parse_config
from tests.conftest import TINY
from tests.test_confinement import checksums

BASE = yaml.safe_load(TINY.read_text())


def with_value(key: str, value) -> dict:
    """The tiny config with `key` (dotted) set to `value`."""
    data = copy.deepcopy(BASE)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def outside(low: float, high: float, low_allowed: bool) -> list[float]:
    """Values just outside a range, and the non-finite ones."""
    below = low - 1 if low_allowed else low
    return [below, *([] if math.isinf(high) else [high * 2 + 1]), math.inf, math.nan]


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_each_numeric_field_is_refused_outside_its_bounds_and_taken_at_them(key):
    low, high, low_allowed = BOUNDS[key]
    integer = isinstance(_default(key), int)
    for value in outside(low, high, low_allowed):
        if integer and not math.isfinite(value):
            continue  # an integer field cannot hold inf or nan: the type check refuses it first
        value = int(value) if integer else value
        with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
            parse_config(with_value(key, value))
    edge = low if low_allowed else (low + min(1.0, (high - low) / 2) if not integer else low + 1)
    for value in (edge, *([] if math.isinf(high) else [high])):
        try:
            parse_config(with_value(key, int(value) if integer else value))
        except ConfigError as exc:  # another rule may object (a cohort too small for its splits), never the range
            assert not (str(exc).startswith(key) and "must be a finite number" in str(exc)), exc


def _default(key: str):
    value = parse_config(BASE)
    for part in key.split("."):
        value = getattr(value, part)
    return value


BAD = {
    "empty.yaml": ("", "the file holds no settings"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not a text file"),
    "list-name.yaml": ("name: [a, b]\n", "config.name: expected text"),
    "inf-level.yaml": ("physics: {levels: [.inf, 300]}\n", "physics.levels"),
    "twice-level.yaml": ("physics: {levels: [300, 300.0]}\n", "lists a level twice"),
    "twice-recon.yaml": ("reconstructors: {names: [tv, tv]}\n", "reconstructors.names: .* names one twice"),
    "no-recon.yaml": ("reconstructors: {names: []}\n", "reconstructors.names: name at least one"),
    "no-bootstrap.yaml": ("evaluation: {n_bootstrap: 0}\n", "evaluation.n_bootstrap"),
    "batch-0.yaml": ("diagnostic: {batch_size: 0}\n", "diagnostic.batch_size"),
    "eval-batch-0.yaml": ("evaluation: {batch_size: 0}\n", "evaluation.batch_size"),
    "ci-2.yaml": ("evaluation: {ci_level: 2}\n", "evaluation.ci_level"),
    "steps-neg.yaml": ("diagnostic: {steps: -1}\n", "diagnostic.steps"),
    "lr-neg.yaml": ("diagnostic: {learning_rate: -1}\n", "diagnostic.learning_rate"),
    "subjects-neg.yaml": ("cohort: {n_subjects: -5}\n", "cohort.n_subjects"),
    "subjects-3.yaml": ("cohort: {n_subjects: 3}\n", "cohort.n_subjects: 3 is too few"),
    "subjects-10.yaml": ("cohort: {n_subjects: 10}\n", "cohort.n_subjects: 10 is too few"),
    "prevalence-2.yaml": ("cohort: {prevalence: {cardiomegaly: 2.0}}\n", "cohort.prevalence.cardiomegaly"),
    "size-33.yaml": ("cohort: {image_size: 33}\n", "cohort.image_size: 33 is not divisible"),
    "no-channels.yaml": ("reconstructors: {unet: {channels: []}}\n", "reconstructors.unet.channels"),
    "strides.yaml": ("reconstructors: {unet: {strides: [2]}}\n", "reconstructors.unet.strides"),
    "empty-mapping.yaml": ("{}\n", "the file holds no settings"),
    "nan-split.yaml": ("cohort: {split_fractions: [.nan, 0.4, 0.3, 0.3]}\n", "cohort.split_fractions"),
    "age-edge.yaml": ("cohort: {age_band_edges: [500]}\n", "cohort.age_band_edges"),
    "bias-prevalence.yaml": ("cohort: {bias: [{attribute: sex, group: F, prevalence: 5.0}]}\n",
                             r"cohort.bias\[0\].prevalence"),
    "bias-contrast.yaml": ("cohort: {bias: [{attribute: sex, group: F, contrast: -3}]}\n",
                           r"cohort.bias\[0\].contrast"),
    "bias-group.yaml": ("cohort: {bias: [{attribute: sex, group: X}]}\n", r"cohort.bias\[0\].group: 'X'"),
}


def test_malformed_configs_are_named_errors_and_store_nothing(built_store, tmp_path, capsys):
    store, _, _ = built_store
    copy_path = tmp_path / "good.duckdb"
    shutil.copy(store.path, copy_path)
    before = checksums(copy_path)
    for name, (content, message) in BAD.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content.strip() == "{}":
            path.write_text(content)
        else:
            merged = {**BASE, **(yaml.safe_load(content) or {})} if content else None
            if merged is not None:
                for section, value in (yaml.safe_load(content) or {}).items():  # merge one level down
                    merged[section] = {**BASE.get(section, {}), **value} if isinstance(value, dict) else value
            path.write_text("" if merged is None else yaml.safe_dump(merged))
        assert main(["sweep", "--config", str(path), "--store", str(copy_path)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (name, err)
        assert re.search(message, err), (name, err)
    assert checksums(copy_path) == before


@pytest.mark.parametrize("pattern", ["{x}/a.nii.gz", "{0}.nii.gz", "{id.nii.gz"])
def test_a_nifti_file_pattern_with_a_wrong_field_is_named(pattern):
    from recon_core.config_loader import from_dict

    data = {"name": "pdgm", "modality": "mri", "physics": {"model": "kspace", "levels": [4]},
            "reconstructors": {"names": ["zero_filled"]},
            "cohort": {"source": "nifti", "nifti": {"root": "/data", "metadata_csv": "/data/m.csv",
                                                     "image_pattern": pattern}}}
    with pytest.raises(ConfigError, match=r"cohort\.nifti\.image_pattern: .* is not a file pattern"):
        from_dict(data)
