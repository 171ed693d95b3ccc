"""Real-data adapter on tiny generated files: accepted sex encodings and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recon_core.cohorts.csv_xray import load_csv_cohort
from recon_core.cohorts.demographics import CohortError
from recon_core.config import CohortConfig, CsvSourceConfig


def make_dataset(root, sexes, ages=None, n=None, labels=None):
    n = n or len(sexes)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        size = (50 + i, 40 + 2 * i)  # any size; the adapter resizes
        Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(root / "img" / f"p{i}.png")
    table = pd.DataFrame({
        "Path": [f"img/p{i}.png" for i in range(n)],
        "Sex": sexes,
        "Age": ages if ages is not None else [30 + 10 * (i % 5) for i in range(n)],
        "subject_id": [f"s{i}" for i in range(n)],
        "Cardiomegaly": labels if labels is not None else [i % 2 for i in range(n)],
    })
    table.to_csv(root / "labels.csv", index=False)
    return root


def config(root, **kw):
    spec = CsvSourceConfig(csv_path=str(root / "labels.csv"), image_root=str(root), labels=("Cardiomegaly",), **kw)
    return CohortConfig(source="csv", image_size=32, csv=spec, age_band_edges=(60,))


def test_reads_words_and_letters(tmp_path):
    root = make_dataset(tmp_path, ["Male", "female", "M", "F", " f ", "MALE", "Female", "m"])
    cohort = load_csv_cohort(config(root), seed=0)
    assert cohort.subjects.sex.tolist() == ["M", "F", "M", "F", "F", "M", "F", "M"]
    assert cohort.images.shape == (8, 32, 32)
    assert cohort.images.min() >= 0 and cohort.images.max() <= 1


def test_numeric_codes_need_a_mapping(tmp_path):
    root = make_dataset(tmp_path, [0, 1, 0, 1, 1, 0])
    with pytest.raises(CohortError, match=r"unknown or missing sex value in 6 row\(s\): row 2 '0'.*sex_codes"):
        load_csv_cohort(config(root), seed=0)
    cohort = load_csv_cohort(config(root, sex_codes={"0": "M", "1": "F"}), seed=0)
    assert cohort.subjects.sex.tolist() == ["M", "F", "M", "F", "F", "M"]


def test_unknown_sex_value_is_named(tmp_path):
    root = make_dataset(tmp_path, ["Male", "Female", "Unknown", "M"])
    with pytest.raises(CohortError, match=r"labels.csv: column 'Sex': .*in 1 row\(s\): row 4 'Unknown'"):
        load_csv_cohort(config(root), seed=0)


def test_constant_sex_column_is_an_error(tmp_path):
    # The reference code parsed sex to one constant value; that must never pass silently.
    root = make_dataset(tmp_path, ["Female"] * 6)
    with pytest.raises(CohortError, match=r"'sex' has a single value \['F'\]"):
        load_csv_cohort(config(root), seed=0)


def test_missing_sex_column(tmp_path):
    root = make_dataset(tmp_path, ["M", "F"])
    pd.read_csv(root / "labels.csv").drop(columns="Sex").to_csv(root / "labels.csv", index=False)
    with pytest.raises(CohortError, match=r"missing column\(s\) \['Sex'\]"):
        load_csv_cohort(config(root), seed=0)


def test_unreadable_image_is_named(tmp_path):
    root = make_dataset(tmp_path, ["M", "F", "M", "F"])
    (root / "img" / "p2.png").write_bytes(b"not an image")
    with pytest.raises(CohortError, match=r"p2.png: unreadable image"):
        load_csv_cohort(config(root), seed=0)


def test_uncertain_labels_become_missing(tmp_path):
    root = make_dataset(tmp_path, ["M", "F", "M", "F"], labels=[1, -1, None, 0])
    cohort = load_csv_cohort(config(root), seed=0)
    values = cohort.subjects["Cardiomegaly"].tolist()
    assert values[0] == 1 and values[3] == 0 and np.isnan(values[1]) and np.isnan(values[2])


def test_bad_age_is_named(tmp_path):
    root = make_dataset(tmp_path, ["M", "F", "M"], ages=[40, "forty", 70])
    with pytest.raises(CohortError, match=r"'Age': missing or invalid age .*row 3 'forty'"):
        load_csv_cohort(config(root), seed=0)


def test_extra_attributes_are_carried(tmp_path):
    root = make_dataset(tmp_path, ["M", "F", "M", "F"])
    table = pd.read_csv(root / "labels.csv")
    table["Race"] = ["A", "B", "B", "A"]
    table.to_csv(root / "labels.csv", index=False)
    cohort = load_csv_cohort(config(root, extra_attributes=("Race",)), seed=0)
    assert cohort.subjects["Race"].tolist() == ["A", "B", "B", "A"]
    table.loc[2, "Race"] = None
    table.to_csv(root / "labels.csv", index=False)
    with pytest.raises(CohortError, match=r"'Race': missing value in 1 row\(s\): row 4 empty"):
        load_csv_cohort(config(root, extra_attributes=("Race",)), seed=0)


def test_manifest_is_checked_without_decoding_images(tmp_path):
    from recon_core.cohorts.csv_xray import read_manifest

    root = make_dataset(tmp_path, ["M", "F", "M", "F"])
    assert len(read_manifest(config(root), seed=0)) == 4
    (root / "img" / "p3.png").unlink()
    with pytest.raises(CohortError, match=r"image file not found under .* row 5 'img/p3.png'"):
        read_manifest(config(root), seed=0)


def test_every_problem_of_a_manifest_is_reported_at_once_with_spreadsheet_rows_and_values_as_written(tmp_path):
    root = make_dataset(tmp_path, ["M", "F", "Unknown", "M", "F", "F", "M", "F"])
    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    table.loc[3, "Age"] = ""  # an empty cell …
    table.loc[4, "Age"] = "nan"  # … is not the text "nan"
    table.loc[5, "Cardiomegaly"] = "yes"
    table.loc[6, "Path"] = "img/missing.png"
    table.to_csv(root / "labels.csv", index=False)
    with pytest.raises(CohortError) as caught:
        load_csv_cohort(config(root), seed=0)
    message = str(caught.value)
    assert "4 problems:" in message  # sex, age, label, image: one round, not four
    assert "column 'Sex'" in message and "row 4 'Unknown'" in message  # data row 2 is spreadsheet row 4
    assert "row 5 empty, row 6 'nan'" in message
    assert "label column 'Cardiomegaly'" in message and "row 7 'yes'" in message
    assert "row 8 'img/missing.png'" in message and "np.float64" not in message


def test_decoding_every_image_finds_each_damaged_file_in_one_round(tmp_path):
    from recon_core.cohorts.csv_xray import decode_all

    root = make_dataset(tmp_path, ["M", "F", "M", "F", "M", "F"])
    assert decode_all(config(root), seed=0) == 6
    (root / "img" / "p1.png").write_bytes(b"not a png")
    Image.fromarray(np.full((40, 40), 9, np.uint8)).save(root / "img" / "p4.png")
    with pytest.raises(CohortError, match=r"2 of 6 image\(s\) cannot be used: row 3 'img/p1.png': unreadable.*"
                                          r"row 6 'img/p4.png': image is constant"):
        decode_all(config(root), seed=0)


def test_a_dataset_too_small_for_a_study_is_refused_before_anything_runs(tmp_path):
    from recon_core.cohorts.csv_xray import CsvChestSource

    root = make_dataset(tmp_path, ["M", "F"] * 8)
    with pytest.raises(CohortError, match=r"split\(s\) .* hold fewer than 8 images"):
        CsvChestSource(config(root), seed=0).check()
