"""The user's models a run used: their content hashes set into the config, and their cards for the store.

A user model's SHA-256 (its file, its bundle's files, its entry point's module, or the folder of
imported reconstructions) is part of the config hash, so every stored row and cache entry names
the exact bytes that made it, and a changed file is a new run rather than a resumed one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from recon_core.config import StudyConfig, UserDiagnosticConfig, UserReconstructorConfig
from recon_core.models.user_models import source_sha256


def _hash(user: UserReconstructorConfig | UserDiagnosticConfig, what: str) -> str:
    """The SHA-256 of a user model's source; per-level models: one hash over each level's, in level order."""
    per_level = getattr(user, "per_level", {})
    if not per_level:
        return source_sha256(user.source, Path(user.path).expanduser() if user.path else None, user.entry_point, what)
    parts = [f"{float(level):g} {source_sha256(user.source, Path(path).expanduser(), '', f'{what} (level {level})')}"
             for level, path in sorted(per_level.items(), key=lambda item: float(item[0]))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def with_model_hashes(config: StudyConfig) -> StudyConfig:
    """The config with every user model's `sha256` set from its files (UserModelError when one is missing)."""
    users = tuple(replace(u, sha256=_hash(u, f"reconstructor {u.name!r}")) for u in config.reconstructors.user)
    diagnostic = config.diagnostic
    for role in ("classifier_model", "segmenter_model"):
        user = getattr(diagnostic, role)
        if user is not None:
            diagnostic = replace(diagnostic, **{role: replace(user, sha256=_hash(user, f"diagnostic.{role}"))})
    return replace(config, reconstructors=replace(config.reconstructors, user=users), diagnostic=diagnostic)


def model_cards(config: StudyConfig) -> pd.DataFrame:
    """One row per user model of a run: role, name, source, where it was read, its SHA-256 and its contract."""
    rows = []
    declared = [("reconstructor", u.name, u) for u in config.reconstructors.user]
    declared += [(role.removesuffix("_model"), role.removesuffix("_model"), getattr(config.diagnostic, role))
                 for role in ("classifier_model", "segmenter_model") if getattr(config.diagnostic, role)]
    for role, name, user in declared:
        location = user.entry_point if user.source == "entry_point" else user.path
        if user.source == "entry_point" and user.path:
            location += f" ({user.path})"
        contract = {k: v for k, v in asdict(user).items() if k not in ("name", "source", "sha256", "path",
                                                                         "entry_point")}
        rows.append(dict(role=role, name=name, source=user.source, location=location, sha256=user.sha256,
                         contract_json=json.dumps(contract, sort_keys=True)))
    return pd.DataFrame(rows, columns=["role", "name", "source", "location", "sha256", "contract_json"])
