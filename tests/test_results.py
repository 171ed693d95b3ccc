"""The read model: runs as every view draws them, from the store alone (older stores included)."""

from __future__ import annotations

import pandas as pd

from recon_core import results
from recon_core.modalities import get_modality
from recon_core.store import CLEAN, Store


def test_a_run_view_carries_its_modality_description(built_store, mri_store):
    store, key, _ = built_store
    xray = results.run_view(store, key)
    assert xray.title == "X-ray (low-dose)" and not xray.level.higher_is_worse
    assert xray.worst_level([3000.0, 300.0]) == 300.0 and xray.mildest_first([300.0, 3000.0]) == [3000.0, 300.0]
    assert [h.metric for h in xray.curves] == ["psnr", "auroc"] and xray.unit == "image"
    store, key, _ = mri_store
    mri = results.run_view(store, key)
    assert mri.level.higher_is_worse and mri.worst_level([4.0, 8.0]) == 8.0 and mri.unit == "patient"
    assert [h.metric for h in mri.curves] == ["psnr", "dice", "auroc"]
    assert mri.gap_metrics[0].metric == "dice_gap"


def altered_copy(store: Store, folder, update: str) -> Store:
    """A copy of a store file with one UPDATE of its runs applied (a store written elsewhere or earlier)."""
    copy = Store(folder / "copy.duckdb")
    copy.path.write_bytes(store.path.read_bytes())
    with copy.connect() as con:
        con.execute(update)
    return copy


def test_a_run_stored_before_descriptions_existed_is_described_by_its_modality(built_store, tmp_path):
    store, key, _ = built_store
    copy = altered_copy(store, tmp_path, "UPDATE runs SET description_json = NULL")
    old = results.run_view(copy, key)
    assert old == results.run_view(store, key)
    assert old.curves == get_modality(old.modality).curves


def test_headline_table_orders_cells_and_formats_intervals(built_store):
    store, key, _ = built_store
    table = results.headline_table(store, results.run_view(store, key))
    assert table.reconstructor.iloc[0] == CLEAN and table["PSNR (dB)"].iloc[0] == "—"
    unet = table[table.reconstructor == "unet"]
    assert unet.level.tolist() == [3000.0, 300.0]
    assert unet["mean AUROC"].str.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]").all()
    assert unet["mean AUROC added"].str.match(r"[+-]\d\.\d{3} \[").all()


def test_an_old_run_whose_physics_model_is_gone_is_drawn_plainly(built_store, tmp_path):
    store, key, _ = built_store
    update = ("UPDATE runs SET description_json = NULL, "
              "config_json = replace(config_json, '\"model\": \"projection\"', '\"model\": \"retired\"')")
    copy = altered_copy(store, tmp_path, update)
    assert "retired" in str(copy.query("SELECT config_json FROM runs").iloc[0, 0])
    view = results.run_view(copy, key)
    assert view.level.name == "dose" and view.title == view.modality  # drawn plainly: the title is the name


def test_a_run_of_a_modality_this_installation_lacks_is_drawn_plainly(built_store, tmp_path):
    store, key, _ = built_store
    view = results.run_view(altered_copy(store, tmp_path, "UPDATE runs SET description_json = NULL, modality = 'ct'"),
                            key)
    assert view.title == "ct" and view.level.name == "dose" and [h.metric for h in view.curves] == ["psnr", "auroc"]
    assert results.modality_title("ct") == "ct"


def test_model_cards_read_in_words_with_a_short_sha():
    cards = pd.DataFrame({"role": ["classifier", "reconstructor"], "name": ["classifier", "mine"],
                          "source": ["bundle", "torchscript"], "location": ["/m/cls", "/m/mine.pt"],
                          "sha256": ["a" * 64, "b" * 64],
                          "contract_json": ['{"channels": 3, "image_size": 224, "labels": ["Effusion"], '
                                            '"normalise": [0.5, 0.25], "thresholds": {}}',
                                            '{"image_size": 0, "inputs": "image", "per_level": {}, '
                                            '"range_tolerance": 0.05, "value_range": [-1.0, 1.0]}']})
    rows = results.model_card_rows(cards)
    assert rows["SHA-256"].tolist() == ["a" * 12 + "…", "b" * 12 + "…"]
    assert rows.contract.tolist() == [
        "channels: 3; image size: 224; labels: [Effusion]; normalise: [0.5, 0.25]",
        "image size: the study's; inputs: image; range tolerance: 0.05; value range: [-1, 1]"]
    assert results.model_card_rows(cards, sha_chars=64)["SHA-256"].tolist() == ["a" * 64, "b" * 64]
