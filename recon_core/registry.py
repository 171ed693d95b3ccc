"""Name → "module:attribute" registries, imported on first use: a new entry is one line, and nothing loads early."""

from __future__ import annotations

import importlib
from typing import Any


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the registered ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """Names of one kind (reconstructors, modalities) and where their code lives."""

    def __init__(self, kind: str, entries: dict[str, str], error: type[UnknownNameError] = UnknownNameError) -> None:
        self.kind = kind
        self.entries = entries
        self.error = error

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self.entries)

    def load(self, name: str) -> Any:
        """The registered class or factory of `name` (its module imported now)."""
        if name not in self.entries:
            raise self.error(f"unknown {self.kind} {name!r}; available: {self.names()}")
        module, attribute = self.entries[name].split(":")
        return getattr(importlib.import_module(module), attribute)
