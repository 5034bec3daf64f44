"""Splits for a user's own data (tables, arrays) and torchvision sets by name.

The order of work is what keeps the test and validation numbers honest: split first
(stratified by class for classification, from the study seed), then fit the
preprocessor and the target's scale on the training rows alone, then apply them to
validation and test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from regsweep.config.schema import DataConfig
from regsweep.data.arrays import read_npz
from regsweep.data.preprocess import (
    array_preprocessor,
    image_preprocessor,
    table_preprocessor,
    transform,
)
from regsweep.data.splits import Splits
from regsweep.data.tables import infer_task, read_table
from regsweep.data.tasks import Task
from regsweep.errors import DataError

# The held-out test split of `test_fraction` always uses this seed, not the study's, so
# that every study (and the benchmark's baselines) is tested on the same rows.
TEST_SPLIT_SEED = 0


def prepare_splits(config: DataConfig, seed: int, device: str) -> Splits:
    """Read ``config``'s data, split it with ``seed``, fit the preprocessor on train only."""
    if config.dataset == "table":
        table = read_table(config)
        x, y = table.train.x, table.train.y.to_numpy()
        test = (table.test.x, table.test.y.to_numpy()) if table.test is not None else None
        task: Task = table.task
        make: Callable[[], Any] = lambda: table_preprocessor(  # noqa: E731
            table.numeric, table.categorical, config.scaler
        )
        where = str(table.train.path)
    elif config.dataset == "arrays":
        assert config.path is not None
        x, y = read_npz(config.path, "path")
        test = read_npz(config.test_path, "test_path") if config.test_path else None
        if test is not None and test[0].shape[1:] != x.shape[1:]:
            raise DataError(
                f"data.test_path: x in {config.test_path} has rows of shape "
                f"{test[0].shape[1:]}, but x in {config.path} has {x.shape[1:]} (allowed: the same)"
            )
        task = config.task or infer_task(pd.Series(y))
        make = array_preprocessor
        where = str(config.path)
    else:
        from regsweep.data.vision import read_torchvision

        train_x, train_y, test_x, test_y = read_torchvision(config)
        x, y = train_x, train_y
        test = (test_x, test_y) if test_x is not None and test_y is not None else None
        task = "classification"
        make = image_preprocessor
        where = f"torchvision {config.name}"
    if config.limit is not None:
        x, y = _rows(x, slice(0, config.limit)), y[: config.limit]
    if test is None and config.test_fraction is not None:
        rest, held = split_rows(len(y), config.test_fraction, y, task, TEST_SPLIT_SEED)
        test = (_rows(x, held), y[held])
        x, y = _rows(x, rest), y[rest]
    targets = _Targets.fit(y, task, where)
    train_idx, val_idx = split_rows(len(y), config.val_fraction, y, task, seed)
    preprocessor = make().fit(_rows(x, train_idx))
    targets = targets.rescaled(y[train_idx])

    def inputs(rows: Any) -> torch.Tensor:
        return torch.from_numpy(transform(preprocessor, rows)).to(device)

    test_key = "test_path" if config.test_path else "path"
    return Splits(
        train_x=inputs(_rows(x, train_idx)),
        train_y=targets.encode(y[train_idx], "path").to(device),
        val_x=inputs(_rows(x, val_idx)),
        val_y=targets.encode(y[val_idx], "path").to(device),
        test_x=inputs(test[0]) if test is not None else None,
        test_y=targets.encode(test[1], test_key).to(device) if test is not None else None,
        n_classes=len(targets.classes) if task == "classification" else 1,
        name=config.name or config.dataset,
        task=task,
        classes=tuple(_plain(c) for c in targets.classes) if task == "classification" else None,
        target_mean=targets.mean,
        target_scale=targets.scale,
        preprocessor=preprocessor,
    )


def _rows(x: Any, index: Any) -> Any:
    return x.iloc[index] if isinstance(x, pd.DataFrame) else x[index]


def split_rows(
    n: int, fraction: float, y: np.ndarray, task: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row indices; stratified by class where every class has two rows."""
    n_held = max(1, round(n * fraction))
    if n - n_held < 2:
        raise DataError(f"data: {n} samples leave nothing to train on (allowed: more rows)")
    stratify = None
    if task == "classification":
        _, counts = np.unique(pd.Series(y).astype(str), return_counts=True)
        # A class with one row cannot be in both parts; scikit-learn would refuse.
        if counts.min() >= 2 and n_held >= len(counts) and n - n_held >= len(counts):
            stratify = pd.Series(y).astype(str).to_numpy()
    kept, held = train_test_split(
        np.arange(n), test_size=n_held, random_state=seed % 2**32, stratify=stratify
    )
    return np.sort(kept), np.sort(held)


class _Targets:
    """Class labels to indices, or a number's standardization, fitted on training rows."""

    def __init__(self, task: str, classes: np.ndarray, where: str) -> None:
        self.task = task
        self.classes = classes
        self.where = where
        self.mean, self.scale = 0.0, 1.0

    @classmethod
    def fit(cls, y: np.ndarray, task: str, where: str) -> _Targets:
        if task == "regression":
            return cls(task, np.array([]), where)
        # Every label of the training file is a class, even one the validation split takes.
        classes = np.unique(pd.Series(y).to_numpy())
        if len(classes) < 2:
            raise DataError(
                f"data.target: {where} has one class ({classes[0]!r}); classification needs "
                "at least 2 (allowed: 2 or more labels, or task: regression)"
            )
        return cls(task, classes, where)

    def rescaled(self, train_y: np.ndarray) -> _Targets:
        if self.task == "regression":
            values = train_y.astype(np.float64)
            self.mean, self.scale = float(values.mean()), float(values.std()) or 1.0
        return self

    def encode(self, y: np.ndarray, key: str) -> torch.Tensor:
        if self.task == "regression":
            values = (np.asarray(y, dtype=np.float64) - self.mean) / self.scale
            return torch.from_numpy(values.astype(np.float32))
        index = np.searchsorted(self.classes, y)
        index = np.clip(index, 0, len(self.classes) - 1)
        unknown = self.classes[index] != y
        if unknown.any():
            raise DataError(
                f"data.{key}: label {y[unknown][0]!r} is not among the training labels of "
                f"{self.where} (allowed: {', '.join(repr(_plain(c)) for c in self.classes[:10])})"
            )
        return torch.from_numpy(index.astype(np.int64))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so classes serialize to JSON."""
    return value.item() if isinstance(value, np.generic) else value
