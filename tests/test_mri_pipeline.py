"""The MRI slice end to end at 48 px: cells land with Dice per slice, patient-level aggregates and outlines."""

from __future__ import annotations

import torch

from recon_core.config_loader import load_config
from recon_core.modalities import mri
from recon_core.physics.mri_kspace import fft2c
from recon_core.runner.replay import CaseReplayer
from recon_core.store import CLEAN, queries
from tests.conftest import ROOT

MRI = ROOT / "configs" / "tiny-mri.yaml"


def test_every_mri_cell_lands_with_dice_and_patient_level_aggregates(mri_store):
    store, key, _ = mri_store
    config = load_config(MRI)
    cells = queries.cells(store, key)
    assert set(zip(cells.reconstructor, cells.level, strict=True)) == {(CLEAN, 0.0)} | {
        (r, float(lv)) for r in config.reconstructors.names for lv in config.physics.levels}
    assert (cells.status == "done").all()
    rows = queries.image_rows(store, key, "unet", 8.0)
    assert rows.dice.between(0, 1).all() and "hd95" in rows and rows.psnr.notna().all()
    n_patients = rows.subject_id.nunique()
    agg = queries.aggregates(store, key)
    overall = agg[(agg.attribute == "all") & (agg.reconstructor == "unet") & (agg.level == 8.0)]
    assert set(overall.n[overall.metric.isin(["dice", "auroc", "psnr"])]) == {n_patients}  # the unit is a patient
    for metric in ("dice", "dice_gap", "dice_skewed_error_ratio", "dice_added", "dice_gap_added", "hd95"):
        assert metric in set(agg.metric), metric
    run = queries.runs(store).iloc[0]
    assert run.modality == mri.MRI.name and run.level_name == "acceleration"
    assert '"higher_is_worse": true' in run.description_json  # the direction is stored with the run


def test_zero_filled_quality_falls_with_acceleration(mri_store):
    store, key, _ = mri_store
    agg = queries.aggregates(store, key, ["psnr"])
    psnr = agg[(agg.attribute == "all") & (agg.reconstructor == "zero_filled")].set_index("level").estimate
    assert psnr[4.0] > psnr[8.0]


def test_examples_keep_true_and_predicted_masks(mri_store):
    store, key, _ = mri_store
    clean = queries.examples(store, key, CLEAN, 0.0)
    assert {"clean", "mask_true", "mask_pred"} <= set(clean.kind)
    recon = queries.examples(store, key, "unet", 4.0)
    assert {"degraded", "reconstructed", "mask_pred"} <= set(recon.kind)
    mask = clean[clean.kind == "mask_true"].pixels.iloc[0]
    assert set(mask.reshape(-1).tolist()) <= {0.0, 1.0} and mask.sum() > 0  # examples show a tumour


def test_replay_of_an_mri_slice_matches_the_sweep_and_data_consistency_holds(mri_store):
    store, key, cache = mri_store
    config = load_config(MRI)
    replayer = CaseReplayer(config, cache / "checkpoints", torch.device("cpu"))
    rows = queries.image_rows(store, key, "unet", 8.0).set_index("image_id")
    image_id = rows.index[5]
    case = replayer.case(image_id, "unet", 8.0)
    assert abs(float(case.recon_scores[0]) - rows.loc[image_id, "score:high_grade"]) < 1e-5
    assert case.mask_true is not None and case.mask_recon is not None
    # data consistency (on in tiny-mri): the output agrees with the measured k-space samples far better
    # than the bare network does (not exactly: the magnitude drops the phase the samples carry)
    physics = replayer.physics
    clean = torch.from_numpy(case.clean[None, None])
    measured = physics.measure(clean, 8.0, [image_id])
    mask = physics.mask(8.0, clean.shape[-1])
    unet = replayer.reconstructor("unet")
    with torch.no_grad():
        bare = unet.net(physics.to_image(measured, 8.0)).clamp(0, 1)

    def misfit(image: torch.Tensor) -> float:
        return float((fft2c(image.to(torch.complex64))[..., mask] - measured[..., mask]).abs().mean())

    assert misfit(torch.from_numpy(case.reconstructed[None, None])) < 0.7 * misfit(bare)
