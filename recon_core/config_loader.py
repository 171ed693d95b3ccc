"""Reads a study config and checks it against the registries: its modality's rules and the known reconstructors.

`recon_core.config` holds the types, the hash and the checks every study shares; this module
adds what only a registry knows (which physics models, cohort sources and labels a modality
takes; which reconstructors exist; which need k-space physics), so the config types never import
the code that runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recon_core.config import ConfigError, StudyConfig, parse_config
from recon_core.modalities import UnknownModalityError, get_modality
from recon_core.reconstructors.registry import available
from recon_core.store.database import CLEAN


def validate(config: StudyConfig) -> StudyConfig:
    """The config's modality-specific values and reconstructor names, each problem naming its key."""
    try:
        modality = get_modality(config.modality)
    except UnknownModalityError as exc:
        raise ConfigError(f"modality: {exc}") from None
    modality.validate(config)
    physics = modality.build_physics(config)
    for i, user in enumerate(config.reconstructors.user):
        if user.name in available() or user.name == CLEAN:
            taken = "the clean road's name in the store" if user.name == CLEAN else "a built-in reconstructor"
            raise ConfigError(f"reconstructors.user[{i}].name: {user.name!r} is {taken}; give yours another name")
        if user.inputs == "image+kspace" and not physics.measures_kspace:
            raise ConfigError(f"reconstructors.user[{i}].inputs: 'image+kspace' needs MRI k-space physics "
                              f"(physics.model: kspace), not {config.physics.model!r}")
    for name in config.reconstructors.names:
        known = name in available() or config.reconstructors.declared(name) is not None
        if not known and config.reconstructors.variant(name) is None:
            raise ConfigError(f"reconstructors.names: unknown reconstructor {name!r}; available {available()}, "
                              "a mitigation variant '<base>+<strategy>' of one, or declare your own under "
                              "reconstructors.user")
        settings = getattr(config.reconstructors, name, None)
        if getattr(settings, "data_consistency", False) and not physics.measures_kspace:
            raise ConfigError(f"reconstructors.{name}.data_consistency: needs MRI k-space physics "
                              f"(physics.model: kspace), not {config.physics.model!r}")
    return config


def from_dict(data: dict[str, Any] | None) -> StudyConfig:
    """Typed, validated StudyConfig from a plain dict (as read from YAML or the store)."""
    return validate(parse_config(data))


def load_config(path: str | Path) -> StudyConfig:
    """Reads a YAML study config, naming the file in any error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise ConfigError(f"{path}: not a text file; a study config is YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not data:  # an empty file (or an empty mapping) is a mistake, never a silent start of the full demo
        raise ConfigError(f"{path}: the file holds no settings; a study config needs at least a name "
                          "(start from configs/tiny.yaml)")
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
