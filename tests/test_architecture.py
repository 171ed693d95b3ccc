"""House rules that a grep can check: arrows point down the flow, recon_core never imports streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_recon_core_never_imports_streamlit():
    offenders = {f for f, names in imports_of("recon_core").items() if any(n.startswith("streamlit") for n in names)}
    assert not offenders


@pytest.mark.parametrize("lower,forbidden", [
    ("recon_core/physics", ("recon_core.reconstructors", "recon_core.diagnostics", "recon_core.store",
                            "recon_core.runner")),
    ("recon_core/reconstructors", ("recon_core.store", "recon_core.runner", "recon_core.diagnostics")),
    ("recon_core/metrics", ("recon_core.store", "recon_core.runner")),
    ("recon_core/fairness", ("recon_core.store", "recon_core.runner")),
    ("recon_core/store", ("recon_core.runner", "recon_core.reconstructors", "torch")),
])
def test_arrows_point_down_the_flow(lower, forbidden):
    offenders = {f: n for f, names in imports_of(lower).items() for n in names if n.startswith(forbidden)}
    assert not offenders


def test_pages_never_write_to_the_store():
    offenders = {f for f, names in imports_of("pages").items() if "recon_core.store.writes" in names}
    assert not offenders
    for path in (ROOT / "pages").glob("*.py"):
        assert "writes." not in path.read_text(), path
