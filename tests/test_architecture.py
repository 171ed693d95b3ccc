"""House rules the code's own structure can prove: layers, no import circle, one model contract, no modality switch.

Imports are read from the source (module level and inside functions; `if TYPE_CHECKING:` blocks
run never and are skipped), so a lazy import cannot hide an arrow pointing back up the flow.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
from pathlib import Path

import pytest
import torch

from recon_core.config import StudyConfig
from recon_core.diagnostics import Classifier, Segmenter
from recon_core.models.contract import TrainableModel
from recon_core.reconstructors import available, build_reconstructor

ROOT = Path(__file__).resolve().parent.parent

LAYERS = (
    ("seeding", "progress", "paths", "confinement", "device", "config", "registry", "metrics.catalogue"),
    ("physics", "cohorts", "metrics", "models"),
    ("reconstructors", "diagnostics", "fairness", "explain", "plots"),
    ("modalities", "mitigation", "store"),
    ("config_loader", "runner", "results", "findings", "tables", "discovery", "exports", "report", "builds"),
    ("cli", "__main__"),
)
"""recon_core's rooms from the bottom of the flow up: a module imports from its own layer or the ones below."""


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines |= set(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(folder: str) -> dict[str, set[str]]:
    """{file: what it imports: `import a.b` gives 'a.b', `from a import b` gives 'a.b' (a module or a name in a)}."""
    found = {}
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        skipped = _type_checking_lines(tree)
        names = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skipped:
                continue
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names |= {f"{node.module}.{a.name}" for a in node.names}
        found[str(path.relative_to(ROOT))] = names
    return found


def module_of(path: str) -> str:
    """'recon_core/store/queries.py' → 'recon_core.store.queries'; a package's __init__ is the package."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def room(module: str) -> str:
    """The room (layer entry) a recon_core module belongs to: the longest matching prefix."""
    inner = module.removeprefix("recon_core.")
    return max((r for layer in LAYERS for r in layer if inner == r or inner.startswith(r + ".")), key=len)


def layer(module: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if room(module) in rooms)


def project_edges() -> dict[str, set[str]]:
    """recon_core module → the recon_core modules it imports (names resolved to existing modules)."""
    files = imports_of("recon_core")
    modules = {module_of(f) for f in files}
    edges = {}
    for file, names in files.items():
        targets = set()
        for name in names:
            while name.startswith("recon_core") and name not in modules:
                name = name.rpartition(".")[0]
            if name in modules:
                targets.add(name)
        edges[module_of(file)] = targets - {module_of(file)}
    return edges


def test_recon_core_never_imports_streamlit():
    offenders = {f for f, names in imports_of("recon_core").items() if any(n.startswith("streamlit") for n in names)}
    assert not offenders


def test_every_module_has_a_room():
    for module in project_edges():
        if module != "recon_core":
            layer(module)  # StopIteration / ValueError would name an unplaced module


def test_no_arrow_points_up_the_layers():
    upward = {(m, t) for m, targets in project_edges().items() if m != "recon_core" for t in targets
              if t != "recon_core" and layer(t) > layer(m)}
    assert not upward, sorted(upward)


def test_no_import_circle():
    edges = project_edges()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(edges):
        if start not in state:
            circle = visit(start)
            assert circle is None, " → ".join(circle)


@pytest.mark.parametrize("lower,forbidden", [
    ("recon_core/physics", ("recon_core.reconstructors", "recon_core.diagnostics", "recon_core.store",
                            "recon_core.runner", "recon_core.modalities", "recon_core.models")),
    ("recon_core/cohorts", ("recon_core.modalities", "recon_core.models", "recon_core.store", "recon_core.runner")),
    ("recon_core/models", ("recon_core.reconstructors", "recon_core.diagnostics", "recon_core.modalities",
                           "recon_core.store", "recon_core.runner")),
    ("recon_core/reconstructors", ("recon_core.store", "recon_core.runner", "recon_core.diagnostics",
                                   "recon_core.modalities")),
    ("recon_core/diagnostics", ("recon_core.reconstructors", "recon_core.store", "recon_core.runner",
                                "recon_core.modalities")),
    ("recon_core/metrics", ("recon_core.store", "recon_core.runner")),
    ("recon_core/fairness", ("recon_core.store", "recon_core.runner", "recon_core.modalities")),
    ("recon_core/modalities", ("recon_core.store", "recon_core.runner", "recon_core.results")),
    ("recon_core/store", ("recon_core.runner", "recon_core.reconstructors", "recon_core.fairness",
                          "recon_core.modalities", "torch")),
])
def test_arrows_point_down_the_flow(lower, forbidden):
    offenders = {f: n for f, names in imports_of(lower).items() for n in names if n.startswith(forbidden)}
    assert not offenders


def test_config_types_know_no_registry():
    """The config's types and hash import nothing of recon_core: the registries sit above them."""
    names = imports_of("recon_core")["recon_core/config.py"]
    assert not [n for n in names if n.startswith("recon_core")]


def test_pages_never_write_to_the_store():
    offenders = {f for f, names in imports_of("pages").items() if "recon_core.store.writes" in names}
    assert not offenders
    for path in (ROOT / "pages").rglob("*.py"):
        assert "writes." not in path.read_text(), path


def test_no_code_branches_on_a_modality_name():
    """Outside recon_core/modalities/ and configs/, a modality's name is not tested in code (the object is asked)."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"""["'](mri|xray)["']""")
    places = [f"{f}:{i}" for f in tracked if not f.startswith(("recon_core/modalities/", "configs/"))
              for i, line in enumerate((ROOT / f).read_text().splitlines(), 1)
              if pattern.search(line) and ("==" in line or "!=" in line or " in (" in line)]
    assert not places, places


def trained_models() -> list[TrainableModel]:
    config = StudyConfig()
    cpu = torch.device("cpu")
    recons = [build_reconstructor(name, config, cpu) for name in available()]
    return [r for r in recons if isinstance(r, TrainableModel)] + [Classifier(config, ("a",), cpu),
                                                                   Segmenter(config, cpu)]


@pytest.mark.parametrize("model", trained_models(), ids=lambda m: m.name)
def test_every_trained_model_fits_and_loads_through_the_contract(model):
    """Fit-or-load, checkpoint naming and loading live in one place: no model writes its own."""
    for method in ("fit", "load", "checkpoint_path"):
        assert getattr(type(model), method) is getattr(TrainableModel, method), f"{model.name} overrides {method}"
    assert len(model.weights_key()) == 16 and isinstance(model.arch, dict)


@pytest.mark.parametrize("name", available())
def test_a_reconstructor_never_receives_the_clean_image(name):
    """At inference a reconstructor gets the degraded image, the physics, the level, the measurement and ids only."""
    recon = build_reconstructor(name, StudyConfig(), torch.device("cpu"))
    for method in (recon.reconstruct, recon.reconstruct_samples):
        parameters = list(inspect.signature(method).parameters)
        assert parameters == ["degraded", "physics", "level", "measurement", "image_ids"], (name, parameters)
