"""data.scaler: every numeric scaler is fitted on the training rows alone, does what its
name says, copes with infinite cells, and survives the pickle an export writes."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

from regsweep.config.schema import DEFAULT_SCALER, DataConfig, as_stored_then
from regsweep.data.preprocess import (
    SCALERS,
    NormalQuantiles,
    smooth_clip,
    table_preprocessor,
    transform,
)
from regsweep.data.resample import holdout
from regsweep.data.splits import load_splits
from tests.data.tabular import mixed_table

SEED = 3
NUMERIC = ["mean radius", "mean texture"]


def config(path: Path, **keys: object) -> DataConfig:
    return DataConfig.model_validate(
        {"dataset": "table", "path": str(path), "target": "diagnosis", **keys}
    )


def numeric_step(preprocessor: object, scaler: str) -> object:
    step = preprocessor.named_transformers_["numeric"].named_steps["scale"]  # type: ignore[attr-defined]
    return step.named_steps["robust"] if scaler == "robust" else step


@pytest.mark.parametrize("scaler", SCALERS)
def test_scaler_is_fitted_on_the_training_rows_only(tmp_path: Path, scaler: str) -> None:
    frame = mixed_table(200)
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.to_csv(train_file, index=False)
    frame.head(40).to_csv(test_file, index=False)
    base = load_splits(config(train_file, test_path=str(test_file), scaler=scaler), seed=SEED)

    # Validation and test rows made absurd: a scaler that saw them would move.
    _, val_rows = holdout(frame["diagnosis"].to_numpy(), 0.2, "classification", SEED)
    shifted = frame.copy()
    shifted.loc[val_rows, "mean radius"] = 1e6
    shifted_test = frame.head(40).assign(**{"mean radius": -1e6})
    other_train, other_test = tmp_path / "train2.csv", tmp_path / "test2.csv"
    shifted.to_csv(other_train, index=False)
    shifted_test.to_csv(other_test, index=False)
    other = load_splits(config(other_train, test_path=str(other_test), scaler=scaler), seed=SEED)
    assert torch.equal(other.train_x, base.train_x)
    assert not torch.equal(other.val_x, base.val_x)

    train_rows = np.setdiff1d(np.arange(len(frame)), val_rows)
    radius = frame.loc[train_rows, "mean radius"].to_numpy()
    fitted = numeric_step(other.preprocessor, scaler)
    if scaler == "standard":
        assert np.isclose(fitted.mean_[0], radius.mean())  # type: ignore[attr-defined]
    elif scaler == "robust":
        assert np.isclose(fitted.center_[0], np.median(radius))  # type: ignore[attr-defined]
    else:
        quantiles = fitted.quantiles_.quantiles_[:, 0]  # type: ignore[attr-defined]
        assert quantiles.max() < radius.max() * 1.01 and quantiles.min() > radius.min() * 0.99
    # Far outside the training range, a value maps to the scaler's bound, not to 1e6's scale.
    radius_column = other.val_x[:, 0]
    if scaler != "standard":
        assert float(radius_column.abs().max()) < 6


def test_quantile_makes_columns_normal_and_keeps_a_binary_column_moderate() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"skewed": rng.lognormal(0, 2, 3000), "binary": rng.integers(0, 2, 3000).astype(float)}
    )
    out = NormalQuantiles().fit(frame).transform(frame)
    assert abs(out[:, 0].mean()) < 0.05 and abs(out[:, 0].std() - 1) < 0.05
    # Without the jitter, 0 and 1 would be the distribution's ends, -5.2 and +5.2.
    assert np.abs(out[:, 1]).max() < 1.5 and len(np.unique(out[:, 1])) == 2
    again = NormalQuantiles().fit(frame).transform(frame)
    assert np.array_equal(out, again)  # a fixed seed: the same fit every time


def test_robust_scaler_clips_smoothly_and_keeps_order() -> None:
    values = np.array([[-1e9], [-10.0], [-1.0], [0.0], [0.5], [3.0], [1e9]])
    clipped = smooth_clip(values)
    assert np.all(np.diff(clipped[:, 0]) > 0)  # the order of values is kept
    assert np.all(np.abs(clipped) <= 3.0) and np.isclose(clipped[3, 0], 0.0)
    assert np.isclose(clipped[4, 0], 0.5 / np.sqrt(1 + (0.5 / 3) ** 2))
    frame = pd.DataFrame({"x": np.r_[np.arange(100.0), 1e7]})
    out = transform(table_preprocessor(["x"], [], "robust").fit(frame), frame)
    assert out[:, 0].max() <= 3 and out[50, 0] == pytest.approx(0, abs=0.02)


@pytest.mark.parametrize("scaler", SCALERS)
def test_infinite_cells_are_gaps_and_the_scaler_pickles(scaler: str) -> None:
    frame = mixed_table(80).drop(columns=["diagnosis"])
    frame.loc[[2, 7], "mean radius"] = [np.inf, -np.inf]
    pre = table_preprocessor(NUMERIC, ["size"], scaler).fit(frame)
    names = list(pre.get_feature_names_out())
    assert "missing_numeric__missingindicator_mean radius" in names, names
    rows = frame.head(8).copy()
    out = transform(pre, rows)
    assert np.isfinite(out).all()
    as_gaps = rows.replace([np.inf, -np.inf], np.nan)
    assert np.array_equal(out, transform(pre, as_gaps))  # inf is imputed exactly as a gap
    buffer = io.BytesIO()
    joblib.dump(pre, buffer)
    buffer.seek(0)
    assert np.array_equal(transform(joblib.load(buffer), rows), out)


def test_tables_get_the_default_scaler_and_old_studies_read_as_standard() -> None:
    table = DataConfig.model_validate({"dataset": "table", "path": "t.csv", "target": "y"})
    assert table.scaler == DEFAULT_SCALER
    assert DataConfig.model_validate({"dataset": "mnist"}).scaler is None
    stored = {"data": {"dataset": "table", "path": "t.csv", "target": "y"}}
    assert as_stored_then(stored)["data"]["scaler"] == "standard"
    given = {"data": {"dataset": "table", "path": "t.csv", "target": "y", "scaler": "quantile"}}
    assert as_stored_then(given) == given
    assert as_stored_then({"data": {"dataset": "mnist"}}) == {"data": {"dataset": "mnist"}}
