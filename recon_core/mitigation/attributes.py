"""The sensitive attribute a mitigation strategy balances: each training image's group as an integer code.

The reference study's code parsed the X-ray sex column to one constant value, so its sex-based
mitigation never saw sex. Here an attribute with fewer than two groups among the training rows
is an error that names the column and the one value it found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recon_core.fairness.groups import GroupError, attribute_values


class MitigationError(ValueError):
    """A mitigation variant that cannot be trained as configured (its attribute, its base, its frozen model)."""


@dataclass(frozen=True)
class SensitiveAttribute:
    """An attribute (or intersection 'sex×age_band') and its groups, sorted; a group's code is its index."""

    name: str
    groups: tuple[str, ...]

    @classmethod
    def of(cls, rows: pd.DataFrame, name: str, where: str) -> SensitiveAttribute:
        """The attribute's groups among `rows` (described by `where`); two at least, else MitigationError."""
        try:
            values = attribute_values(rows, name)
        except GroupError as exc:
            raise MitigationError(f"reconstructors.mitigation.attribute {name!r}: {exc} ({where})") from None
        groups = tuple(sorted(values.unique()))
        if len(groups) < 2:
            found = repr(groups[0]) if groups else "no value"
            raise MitigationError(f"reconstructors.mitigation.attribute {name!r}: all {len(rows)} images of {where} "
                                  f"have {name} = {found}; a strategy cannot balance one group (check how the "
                                  f"cohort's {name} column is read: the reference study parsed sex to a constant)")
        return cls(name, groups)

    def codes(self, rows: pd.DataFrame) -> np.ndarray:
        """Each row's group code (int64); a value outside the groups is a MitigationError naming it."""
        values = attribute_values(rows, self.name)
        index = {g: i for i, g in enumerate(self.groups)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise MitigationError(f"reconstructors.mitigation.attribute {self.name!r}: value {unknown[0]!r} is not "
                                  f"one of the training groups {list(self.groups)}")
        return values.map(index).to_numpy(dtype=np.int64, copy=True)

    def prior_entropy(self, rows: pd.DataFrame) -> float:
        """The entropy of the groups' shares among `rows`: the cross-entropy of a guess that knows only the shares."""
        shares = np.bincount(self.codes(rows), minlength=len(self.groups)) / len(rows)
        shares = shares[shares > 0]
        return float(-(shares * np.log(shares)).sum())

    def tensor(self, rows: pd.DataFrame, device: torch.device) -> torch.Tensor:
        """The rows' group codes as a (B,) int64 tensor on `device` (pinned on the host for a GPU: no wait per step)."""
        codes = torch.from_numpy(self.codes(rows))
        if device.type == "cuda":
            return codes.pin_memory().to(device, non_blocking=True)
        return codes.to(device)
