"""Configs: stable hashes, YAML round trip, clear errors for bad values."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from recon_core.config import ConfigError, StudyConfig
from recon_core.config_loader import from_dict, load_config
from recon_core.reconstructors import build_reconstructor
from tests.conftest import ROOT


def test_hash_is_stable_and_sensitive(tiny_config):
    again = from_dict(tiny_config.to_dict())
    assert again == tiny_config
    assert again.config_hash() == tiny_config.config_hash()
    changed = dataclasses.replace(tiny_config, seed=tiny_config.seed + 1)
    assert changed.config_hash() != tiny_config.config_hash()


def test_hash_is_a_fixed_function_of_content():
    # The hash must not depend on the process (no id(), no dict order): recompute from JSON.
    a = StudyConfig().config_hash()
    b = from_dict(StudyConfig().to_dict()).config_hash()
    assert a == b and len(a) == 16


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cohort: {n_subject: 10}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*n_subject"):
        load_config(path)


@pytest.mark.parametrize("level", [0, -100])
def test_non_positive_level_is_rejected(level):
    with pytest.raises(ConfigError, match=r"dose level .* must be > 0"):
        from_dict({"physics": {"levels": [1000, level]}})


def test_unknown_reconstructor_is_rejected():
    with pytest.raises(ConfigError, match=r"unknown reconstructor 'bm3d'.*available"):
        from_dict({"reconstructors": {"names": ["none", "bm3d"]}})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_fairness_attribute_is_named():
    with pytest.raises(ConfigError, match=r"'sex×race' names unknown column 'race'"):
        from_dict({"evaluation": {"attributes": ["sex", "sex×race"]}})


@pytest.mark.parametrize("edges", [[], [60, 40], [50, 50]])
def test_bad_age_bands_are_named(edges):
    with pytest.raises(ConfigError, match="age_band_edges"):
        from_dict({"cohort": {"age_band_edges": edges}})


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    config = load_config(path)
    assert config.name and config.config_hash() == load_config(path).config_hash()
    for name in config.reconstructors.names:
        build_reconstructor(name, config, torch.device("cpu"))  # known, and its network builds


def test_data_consistency_without_kspace_physics_is_named():
    with pytest.raises(ConfigError, match=r"reconstructors.gan.data_consistency: needs MRI k-space physics"):
        from_dict({"reconstructors": {"names": ["none", "gan"], "gan": {"data_consistency": True}}})
    from recon_core.physics import ProjectionDose
    from recon_core.physics.base import PhysicsError

    image = torch.zeros(1, 1, 8, 8)
    with pytest.raises(PhysicsError, match="data consistency needs k-space physics"):
        ProjectionDose(seed=0).consistent(image, image, 100.0)
