"""The preprocessor is fitted on the training rows only, and copes with what tests bring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from regsweep.config.schema import DataConfig
from regsweep.data.preprocess import table_preprocessor, transform
from regsweep.data.resample import holdout
from regsweep.data.splits import load_splits
from tests.data.tabular import mixed_table

SEED = 5


def config(path: Path, **keys: object) -> DataConfig:
    return DataConfig.model_validate(
        {"dataset": "table", "path": str(path), "target": "diagnosis", **keys}
    )


def test_validation_and_test_rows_do_not_leak_into_the_statistics(tmp_path: Path) -> None:
    frame = mixed_table(200)
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.to_csv(train_file, index=False)
    frame.head(40).to_csv(test_file, index=False)
    base = load_splits(config(train_file, test_path=str(test_file), scaler="standard"), seed=SEED)

    # The split depends on the labels and the seed only, so these rows stay validation
    # rows when their features change: make them, and every test row, absurd.
    _, val_rows = holdout(frame["diagnosis"].to_numpy(), 0.2, "classification", SEED)
    shifted = frame.copy()
    shifted.loc[val_rows, "mean radius"] = 1e6
    shifted.loc[val_rows, "size"] = "enormous"
    shifted_test = frame.head(40).assign(**{"mean radius": -1e6, "size": "tiny"})
    other_train, other_test = tmp_path / "train2.csv", tmp_path / "test2.csv"
    shifted.to_csv(other_train, index=False)
    shifted_test.to_csv(other_test, index=False)
    other = load_splits(
        config(other_train, test_path=str(other_test), scaler="standard"), seed=SEED
    )

    assert torch.equal(other.train_x, base.train_x)  # same statistics, same training inputs
    scaler = other.preprocessor.named_transformers_["numeric"].named_steps["scale"]
    train_rows = np.setdiff1d(np.arange(len(frame)), val_rows)
    assert np.isclose(scaler.mean_[0], frame.loc[train_rows, "mean radius"].mean())
    onehot = other.preprocessor.named_transformers_["categorical"].named_steps["onehot"]
    assert "enormous" not in onehot.categories_[0] and "tiny" not in onehot.categories_[0]
    assert not torch.equal(other.val_x, base.val_x)  # the changed rows did arrive


def test_missing_values_get_an_indicator_and_unknown_categories_pass() -> None:
    frame = mixed_table(60)
    features = frame.drop(columns=["diagnosis"])
    pre = table_preprocessor(["mean radius", "mean texture"], ["size"], "standard").fit(features)
    names = list(pre.get_feature_names_out())
    assert "missing_numeric__missingindicator_mean texture" in names, names
    assert "missing_categorical__missingindicator_size" in names, names
    new = features.head(3).assign(size=["gigantic", None, "small"])
    new.loc[0, "mean radius"] = np.nan
    out = transform(pre, new)
    assert out.shape == (3, len(names)) and np.isfinite(out).all()
    onehot = [i for i, n in enumerate(names) if n.startswith("categorical__size_")]
    assert out[0, onehot].sum() == 0  # an unseen category: all zeros, no error
    # Imputed with the training median, so the standardized value is the median's.
    scaler = pre.named_transformers_["numeric"].named_steps["scale"]
    median = features["mean radius"].median()
    assert np.isclose(out[0, 0], (median - scaler.mean_[0]) / scaler.scale_[0], atol=1e-5)


def test_pandas_string_and_category_dtypes_are_categories() -> None:
    frame = pd.DataFrame(
        {
            "c": pd.Series(["a", "b", None, "a"], dtype="string"),
            "k": pd.Categorical(["x", "y", "x", None]),
            "n": [1.0, 2.0, 3.0, 4.0],
        }
    )
    out = transform(table_preprocessor(["n"], ["c", "k"]).fit(frame), frame)
    assert out.shape[0] == 4 and np.isfinite(out).all()
