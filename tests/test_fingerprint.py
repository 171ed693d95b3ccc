"""Changed data is a new run: a dataset's content fingerprint enters the config hash; generated cohorts keep theirs."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from PIL import Image

from recon_core.config_loader import from_dict, load_config
from recon_core.runner import prepare
from tests.conftest import TINY
from tests.test_confinement import image, manifest


def dataset_config(root):
    data = load_config(TINY).to_dict()
    data["cohort"].update(source="csv", csv={"csv_path": str(root / "labels.csv"), "image_root": str(root),
                                             "labels": ["Cardiomegaly"]})
    return from_dict(data)


def test_editing_the_data_changes_the_hash_and_nothing_else_does(tmp_path):
    root = tmp_path / "data"
    for i in range(96):  # 96 images: every split of a study holds at least 8
        image(root / "img" / f"p{i}.png")
    manifest(root, [f"img/p{i}.png" for i in range(96)])
    config = dataset_config(root)
    first = prepare(config)
    assert first.cohort.fingerprint and prepare(config).config_hash() == first.config_hash()  # stable
    seen = {first.config_hash()}
    table = pd.read_csv(root / "labels.csv")
    table.assign(Cardiomegaly=1 - table.Cardiomegaly).to_csv(root / "labels.csv", index=False)  # every label flipped
    seen.add(prepare(config).config_hash())
    table.to_csv(root / "labels.csv", index=False)
    assert prepare(config).config_hash() == first.config_hash()  # the same bytes again: the same run
    table.iloc[:-2].to_csv(root / "labels.csv", index=False)  # two rows removed
    seen.add(prepare(config).config_hash())
    table.to_csv(root / "labels.csv", index=False)
    time.sleep(0.01)
    Image.fromarray(np.zeros((40, 40), np.uint8) + 7).save(root / "img" / "p3.png")  # one image replaced
    seen.add(prepare(config).config_hash())
    assert len(seen) == 4


def test_a_generated_cohort_keeps_its_hash():
    config = load_config(TINY)
    assert prepare(config) == config and config.config_hash() == "63d8062732be6ed0"  # with its variants
    assert "fingerprint" not in config.to_dict()["cohort"]  # left out while empty: old hashes hold


def test_a_replay_refuses_data_changed_since_the_run(tmp_path):
    import pytest
    import torch

    from recon_core.cohorts import CohortError
    from recon_core.runner.replay import CaseReplayer

    root = tmp_path / "data"
    for i in range(96):
        image(root / "img" / f"p{i}.png")
    manifest(root, [f"img/p{i}.png" for i in range(96)])
    ran = prepare(dataset_config(root))
    table = pd.read_csv(root / "labels.csv")
    table.assign(Cardiomegaly=1 - table.Cardiomegaly).to_csv(root / "labels.csv", index=False)
    with pytest.raises(CohortError, match="has changed since it ran"):  # before any weights are looked for
        CaseReplayer(ran, tmp_path / "checkpoints", torch.device("cpu"))
