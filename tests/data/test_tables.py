"""dataset: table: reading CSV, TSV and Parquet, and every bad input named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from regsweep.config.schema import DataConfig
from regsweep.data.splits import load_splits
from regsweep.data.tables import infer_task, read_table
from regsweep.errors import DataError
from tests.data.tabular import BREAST_CANCER, DIABETES, mixed_table


def table(path: Path, **keys: Any) -> DataConfig:
    return DataConfig.model_validate({"dataset": "table", "path": str(path), **keys})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".parquet"])
def test_every_format_reads_the_same_table(tmp_path: Path, suffix: str) -> None:
    frame = mixed_table()
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    data = read_table(table(path, target="diagnosis"))
    assert data.task == "classification"
    assert data.numeric == ["mean radius", "mean texture"]
    assert data.categorical == ["size"]  # inferred from the dtype
    assert list(data.train.y) == list(frame["diagnosis"])
    assert np.allclose(data.train.x["mean radius"], frame["mean radius"])


def test_features_drop_and_skiprows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    # A metadata line before the header, as scikit-learn's own bundled files have.
    path.write_text("569,2,metadata\n" + mixed_table().to_csv(index=False))
    data = read_table(table(path, target="diagnosis", skiprows=1, drop=["size"]))
    assert data.numeric == ["mean radius", "mean texture"] and data.categorical == []
    data = read_table(table(path, target="diagnosis", skiprows=1, features=["mean radius"]))
    assert list(data.train.x.columns) == ["mean radius"]


def test_task_is_inferred_from_the_target() -> None:
    assert infer_task(pd.Series(["a", "b", "a"])) == "classification"
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_task(pd.Series(np.arange(100))) == "regression"  # many whole numbers
    assert read_table(table(DIABETES, target="progression")).task == "regression"


def test_real_table_splits_stratified_and_reproducible() -> None:
    config = table(BREAST_CANCER, target="diagnosis", test_fraction=0.2)
    splits = load_splits(config, seed=3)
    assert splits.classes == ("benign", "malignant") and splits.n_classes == 2
    assert splits.n_features == 30
    assert splits.test_y is not None and len(splits.test_y) == round(569 * 0.2)
    # Stratified: the validation split has the training file's class balance.
    overall = (pd.read_csv(BREAST_CANCER)["diagnosis"] == "malignant").mean()
    assert abs(float(splits.val_y.float().mean()) - overall) < 0.01
    other = load_splits(config, seed=4)
    assert other.fingerprint() != splits.fingerprint()
    # The held-out test rows do not depend on the study seed (their scaling does: it is
    # fitted on each seed's training rows).
    assert other.test_y is not None and bool((other.test_y == splits.test_y).all())


def test_regression_targets_are_standardized_on_train() -> None:
    splits = load_splits(table(DIABETES, target="progression", test_fraction=0.2), seed=0)
    assert splits.task == "regression" and splits.n_classes == 1
    assert splits.train_y.dtype.is_floating_point
    assert abs(float(splits.train_y.mean())) < 1e-5
    assert abs(float(splits.train_y.std(unbiased=False)) - 1) < 1e-4
    raw = pd.read_csv(DIABETES)["progression"]
    assert 50 < splits.target_scale < 100 and raw.min() < splits.target_mean < raw.max()


# Bad input ------------------------------------------------------------------------------


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def expect(config: DataConfig, *words: str) -> str:
    with pytest.raises(DataError) as info:
        load_splits(config, seed=0)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_missing_target_column(tmp_path: Path) -> None:
    path = write(tmp_path, mixed_table())
    expect(table(path, target="label"), "data.target", "'label'", str(path), "'diagnosis'")


def test_text_column_not_declared_categorical(tmp_path: Path) -> None:
    path = write(tmp_path, mixed_table())
    expect(
        table(path, target="diagnosis", categorical=[]),
        "data.categorical",
        "'size'",
        str(path),
        "allowed: add it to data.categorical",
    )


def test_one_class(tmp_path: Path) -> None:
    frame = mixed_table().assign(diagnosis="benign")
    expect(table(write(tmp_path, frame), target="diagnosis"), "data.target", "one class")


def test_nan_in_the_target(tmp_path: Path) -> None:
    frame = mixed_table()
    frame.loc[[4, 9], "diagnosis"] = None
    # Line numbers as an editor shows them: the header is line 1.
    expect(table(write(tmp_path, frame), target="diagnosis"), "data.target", "line 6, 11")


def test_test_file_with_other_columns(tmp_path: Path) -> None:
    frame = mixed_table()
    train = write(tmp_path, frame)
    test = write(tmp_path, frame.drop(columns=["size"]).assign(extra=1), "test.csv")
    expect(
        table(train, target="diagnosis", test_path=str(test)),
        "data.test_path",
        str(test),
        "missing 'size'",
        "extra 'extra'",
    )


def test_csv_that_does_not_parse_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1\n5,6,7,8\n1,1,0\n")
    expect(table(path, target="y"), "data.path", str(path), "line 4")


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_text("x")
    expect(table(path, target="y"), "data.path", "allowed: .csv")
    expect(table(tmp_path / "none.csv", target="y"), "data.path", "no such file")


def test_test_label_unseen_in_training(tmp_path: Path) -> None:
    frame = mixed_table()
    test = write(tmp_path, frame.assign(diagnosis="unknown"), "test.csv")
    config = table(write(tmp_path, frame), target="diagnosis", test_path=str(test))
    expect(config, "data.test_path", "'unknown'", "not among the training labels")


def test_regression_needs_a_numeric_target(tmp_path: Path) -> None:
    path = write(tmp_path, mixed_table())
    expect(table(path, target="diagnosis", task="regression"), "data.task", "numeric")


def test_test_file_with_text_in_a_numeric_column(tmp_path: Path) -> None:
    frame = mixed_table()
    test = frame.head(30).astype({"mean radius": object})
    test.loc[4, "mean radius"] = "?"
    config = table(
        write(tmp_path, frame), target="diagnosis", test_path=str(write(tmp_path, test, "u.csv"))
    )
    expect(config, "data.test_path", "'mean radius'", "u.csv", "'?'", "data.na_values")
    config = config.model_copy(update={"na_values": ["?"]})
    splits = load_splits(config, seed=0)  # the mark read as a gap: imputed
    assert splits.test_x is not None and bool(torch.isfinite(splits.test_x).all())
