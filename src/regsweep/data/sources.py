"""Readers: every data set as raw rows, the same shape for all of them.

A reader returns the training rows and labels (and the test rows, where the data set
has a test split) exactly as stored: table columns as pandas read them, array values,
image pixels. Nothing is fitted here; which rows train, which choose and which assess
is ``data.resample``'s job, and the preprocessor is fitted afterwards on the rows that
train (``data.splits``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regsweep.config.schema import DataConfig
from regsweep.data.preprocess import array_preprocessor, image_preprocessor, table_preprocessor
from regsweep.data.resample import holdout
from regsweep.data.tasks import Task
from regsweep.errors import DataError

# The held-out test split of `test_fraction` always uses this seed, not the study's, so
# that every study (and the benchmark's baselines) is tested on the same rows.
TEST_SPLIT_SEED = 0
# The digits set has no official test split; this share is held out as one (with the
# seed above, like `test_fraction`).
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class RawData:
    """One data set's rows as read, before any split or fitted transform."""

    x: Any  # a DataFrame (tables) or an array with samples first
    y: np.ndarray
    test_x: Any | None
    test_y: np.ndarray | None
    task: Task
    make_preprocessor: Callable[[], Any]  # an unfitted scikit-learn transformer
    where: str  # the file (or set) the rows came from, for errors
    name: str
    test_key: str = "path"  # the config key that named the test rows, for errors
    # The class labels when the data set fixes them (images: 0 .. the largest label, as
    # torchvision numbers them); None: the distinct training labels.
    classes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def rows(self, index: Any) -> Any:
        """The training rows at ``index`` (positions)."""
        return take(self.x, index)


def take(x: Any, index: Any) -> Any:
    return x.iloc[index] if isinstance(x, pd.DataFrame) else x[index]


def read_source(config: DataConfig) -> RawData:
    """The rows of ``config``'s data set, with ``limit`` and ``test_fraction`` applied."""
    raw = _read(config)
    x, y, test_x, test_y = raw.x, raw.y, raw.test_x, raw.test_y
    if config.limit is not None:
        x, y = take(x, slice(0, config.limit)), y[: config.limit]
    if len(x) != len(y):
        raise DataError(f"data: {len(x)} training samples but {len(y)} labels; they must match")
    fraction = config.test_fraction or (
        DIGITS_TEST_FRACTION if config.dataset == "digits" else None
    )
    if test_y is None and fraction is not None:
        rest, held = holdout(y, fraction, raw.task, TEST_SPLIT_SEED)
        test_x, test_y = take(x, held), y[held]
        x, y = take(x, rest), y[rest]
    return dataclasses.replace(raw, x=x, y=y, test_x=test_x, test_y=test_y)


def _read(config: DataConfig) -> RawData:
    if config.dataset == "table":
        return _table(config)
    if config.dataset == "arrays":
        return _arrays(config)
    return _images(config)


def _table(config: DataConfig) -> RawData:
    from regsweep.data.tables import read_table

    table = read_table(config)
    test = table.test
    return RawData(
        table.train.x,
        table.train.y.to_numpy(),
        test.x if test is not None else None,
        test.y.to_numpy() if test is not None else None,
        table.task,
        lambda: table_preprocessor(table.numeric, table.categorical, config.scaler),
        str(table.train.path),
        config.name or config.dataset,
        "test_path" if config.test_path else "path",
    )


def _arrays(config: DataConfig) -> RawData:
    from regsweep.data.arrays import read_npz
    from regsweep.data.tables import infer_task

    assert config.path is not None  # DataConfig guarantees it
    x, y = read_npz(config.path, "path")
    test = read_npz(config.test_path, "test_path") if config.test_path else None
    if test is not None and test[0].shape[1:] != x.shape[1:]:
        raise DataError(
            f"data.test_path: x in {config.test_path} has rows of shape "
            f"{test[0].shape[1:]}, but x in {config.path} has {x.shape[1:]} (allowed: the same)"
        )
    return RawData(
        x,
        y,
        test[0] if test is not None else None,
        test[1] if test is not None else None,
        config.task or infer_task(pd.Series(y)),
        array_preprocessor,
        str(config.path),
        config.name or config.dataset,
        "test_path" if config.test_path else "path",
    )


def _images(config: DataConfig) -> RawData:
    """MNIST, Fashion-MNIST, IDX files, scikit-learn's digits, torchvision sets by name."""
    if config.dataset == "digits":
        x, y, test_x, test_y = _read_digits()
        where = "scikit-learn's digits"
    elif config.dataset == "idx":
        x, y, test_x, test_y = _read_idx_files(config)
        where = str(config.train_images)
    elif config.dataset == "torchvision":
        from regsweep.data.vision import read_torchvision

        x, y, test_x, test_y = read_torchvision(config)
        where = f"torchvision {config.name}"
    else:
        from regsweep.data.vision import read_mnist

        x, y, test_x, test_y = read_mnist(config)
        where = config.dataset
    labels = np.asarray(y).astype(np.int64)
    test_labels = None if test_y is None else np.asarray(test_y).astype(np.int64)
    top = max(
        int(labels.max(initial=0)),
        int(test_labels.max(initial=0)) if test_labels is not None else 0,
    )
    return RawData(
        x,
        labels,
        test_x,
        test_labels,
        "classification",
        image_preprocessor,
        where,
        config.name if config.dataset == "torchvision" and config.name else config.dataset,
        classes=np.arange(top + 1),
    )


def _read_digits() -> tuple[np.ndarray, np.ndarray, None, None]:
    """scikit-learn's bundled 8x8 digits (pixel values 0 to 16), with no test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64), None, None


def _read_idx_files(config: DataConfig) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    from regsweep.data.idx import read_idx

    def read(key: str) -> np.ndarray | None:
        value = getattr(config, key)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise DataError(f"data.{key}: no such file {path}")
        try:
            return read_idx(path)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"data.{key}: cannot read {path} as IDX ({exc})") from None

    images, labels = read("train_images"), read("train_labels")
    assert images is not None and labels is not None  # guaranteed by DataConfig
    return images, labels, read("test_images"), read("test_labels")
