"""The user's own reconstructor on the dashboard (AppTest, no browser): added on the Run page, failed cells and
model cards on Overview."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from recon_core.config_loader import from_dict, load_config
from recon_core.runner import run_study
from recon_core.store import Store, queries
from tests.conftest import TINY
from tests.test_app import run_page


class Smooth(torch.nn.Module):
    """A 3×3 box filter, clamped to [0, 1] then scaled: `scale` 1 keeps its contract, 10 breaks its value range."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).clamp(0, 1) * self.scale


def save_torchscript(path: Path, scale: float = 1.0) -> Path:
    """A TorchScript file of `Smooth(scale)` at `path` (torch.jit.save of a scripted module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(Smooth(scale)), str(path))
    return path


def quick_spec(**reconstructors) -> dict:
    """configs/tiny.yaml as a dict, lighter (a shorter-trained classifier, the fewest bootstrap draws allowed),
    with the given `reconstructors` settings."""
    spec = load_config(TINY).to_dict()
    spec["reconstructors"] = {**spec["reconstructors"], **reconstructors}
    spec["diagnostic"]["steps"] = 20
    spec["evaluation"]["n_bootstrap"] = 100
    return spec


@pytest.fixture(scope="module")
def incomplete_store(tmp_path_factory) -> tuple[Store, str, Path]:
    """A real run whose user model breaks its value range at every level: `none` done, `loud` failed."""
    cache = tmp_path_factory.mktemp("incomplete")
    model = save_torchscript(cache / "models" / "loud.pt", scale=10.0)
    config = from_dict(quick_spec(names=["none", "loud"], user=[dict(name="loud", source="torchscript",
                                                                     path=str(model))]))
    store = Store(cache / "tandem.duckdb")
    key = run_study(config, store, cache / "checkpoints", torch.device("cpu"))
    return store, key, cache


def test_overview_names_the_failed_cells_and_the_models_from_outside(incomplete_store, monkeypatch):
    store, key, cache = incomplete_store
    assert queries.run_status(store, key) == "incomplete"
    at = run_page("pages/overview.py", str(store.path), monkeypatch, str(cache))
    assert any("Run status: **incomplete**" in c.value for c in at.caption)
    assert "Failed cells" in [h.value for h in at.subheader]
    failed = at.dataframe[0].value
    assert list(failed.columns) == ["reconstructor", "level", "reason"]
    assert set(failed.reconstructor) == {"loud"} and set(failed.level) == {3000.0, 300.0}
    assert failed.reason.str.contains("outside its declared value_range").all()
    cards = at.dataframe[1].value
    assert cards.name.tolist() == ["loud"] and cards.source.tolist() == ["torchscript"]
    assert cards["SHA-256"].iloc[0] == queries.model_cards(store, key).sha256.iloc[0][:12] + "…"
    assert "value range: [0, 1]" in cards.contract.iloc[0]
    assert len(at.get("plotly_chart")) >= 2  # the built-ins' curves still draw


def test_run_page_retries_an_incomplete_run(incomplete_store, monkeypatch, tmp_path):
    store, key, cache = incomplete_store
    study = tmp_path / "allowed" / "study.yaml"
    study.parent.mkdir()
    study.write_text(yaml.safe_dump(queries.run_config(store, key)))  # the run's own config, as a user's YAML
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(study.parent))
    at = run_page("pages/run.py", str(store.path), monkeypatch, str(cache))
    at.radio(key="run_source").set_value("path").run()
    at.text_input(key="run_path").set_value(str(study)).run()
    assert not at.exception
    assert any("run is incomplete: 2 cell(s) failed" in w.value for w in at.warning)
    assert not at.button(key="run_start").disabled  # Start retries the failed cells


def test_run_page_adds_a_torchscript_reconstructor_inside_the_allowed_folders(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    mine = save_torchscript(allowed / "models" / "mine.pt")
    save_torchscript(allowed / "loud.ts", scale=10.0)
    (allowed / "notes.pt").write_text("not a model")
    outside = save_torchscript(tmp_path / "elsewhere" / "other.pt")
    (allowed / "link.pt").symlink_to(outside)  # leads out: neither offered nor read
    monkeypatch.setenv("TANDEM_DATA_ROOTS", str(allowed))
    at = run_page("pages/run.py", str(tmp_path / "s.duckdb"), monkeypatch, str(tmp_path))
    at.selectbox(key="run_config").set_value("tiny.yaml").run()
    assert not any("Session slot" in m.value for m in at.markdown)  # no bare string drawn by Streamlit's magic
    files = at.selectbox(key="run_user_file").options
    assert str(mine.resolve()) in files and str(allowed.resolve() / "loud.ts") in files
    assert not any("other.pt" in f or "link.pt" in f for f in files)

    def add(file: str, name: str = "", path: str = "") -> None:
        at.selectbox(key="run_user_file").set_value(file)
        if path:
            at.run()
            at.text_input(key="run_user_path").set_value(path)
        at.text_input(key="run_user_name").set_value(name)
        at.button(key="run_user_add").click().run()
        assert not at.exception

    add("another path…", path=str(outside))
    assert any("cannot be added" in e.value and "outside the folders Tandem may read" in e.value for e in at.error)
    add("another path…", path=str(allowed / "link.pt"))
    assert any("cannot be added" in e.value and "outside the folders Tandem may read" in e.value for e in at.error)
    add("another path…", path=str(allowed / "notes.pt"))
    assert any("is not a TorchScript file" in e.value for e in at.error)
    add(str(mine.resolve()), name="tv")
    assert any("'tv' is a built-in reconstructor" in e.value for e in at.error)
    add(str(mine.resolve()))  # named after its file
    assert not at.error
    assert any("reconstructors none, tv, unet, gan, diffusion, unet+reweight, unet+eodd, unet+adversarial, mine at"
               in s.value for s in at.success)
    cards = at.dataframe[0].value
    assert cards.name.tolist() == ["mine"] and cards.location.tolist() == [str(mine.resolve())]
    assert len(cards["SHA-256"].iloc[0]) == 64
    add(str(allowed.resolve() / "loud.ts"))  # breaks its range on a grey batch: added, with a warning
    assert any("outside its declared value_range" in w.value and "cells will fail" in w.value for w in at.warning)
    assert at.dataframe[0].value.name.tolist() == ["mine", "loud"]
    at.button(key="run_user_remove_1").click().run()
    assert at.dataframe[0].value.name.tolist() == ["mine"] and not at.warning
    assert "run_user_inputs" not in [r.key for r in at.radio]  # k-space inputs are offered on MRI only
    at.selectbox(key="run_config").set_value("tiny-mri.yaml").run()  # the model follows another config
    assert any("tiny-mri" in s.value and ", mine at" in s.value for s in at.success)
    assert at.radio(key="run_user_inputs").value == "image" and len(at.radio(key="run_user_inputs").options) == 2


def test_a_fresh_session_opens_on_the_newest_finished_run_an_incomplete_one_included():
    from pages.ui.sidebar import _first_choice

    frame = pd.DataFrame({"config_hash": ["a", "b", "c"], "status": ["running", "incomplete", "done"]})
    assert _first_choice(frame).config_hash == "b"
