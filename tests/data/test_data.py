"""Data sets as a user supplies them: torchvision's folder filled by hand, IDX files, digits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from regsweep.config.schema import DataConfig
from regsweep.data.idx import read_idx, write_idx
from regsweep.data.splits import load_splits
from regsweep.errors import DataError
from tests.conftest import IdxData

NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def fill_raw(data: IdxData, raw: Path, *, gz: bool) -> None:
    """Put ``data`` where torchvision keeps MNIST: the .gz files, or extracted copies."""
    raw.mkdir(parents=True)
    for key, name in NAMES.items():
        source = getattr(data, key)
        if gz:
            shutil.copy(source, raw / f"{name}.gz")
        else:
            write_idx(raw / name, read_idx(source))


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_files_copied_into_the_root_need_no_download(
    tiny_idx: IdxData, tmp_path: Path, gz: bool, dataset: str
) -> None:
    folder = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[dataset]
    fill_raw(tiny_idx, tmp_path / folder / "raw", gz=gz)
    config = DataConfig(dataset=dataset, root=str(tmp_path), download=False, val_fraction=0.25)
    splits = load_splits(config, seed=0)
    assert (len(splits.train_x), len(splits.val_x)) == (450, 150)
    assert splits.test_x is not None and len(splits.test_x) == 200
    assert splits.n_features == 64 and splits.n_classes == 10
    # Standardized with training statistics.
    assert abs(float(splits.train_x.mean())) < 1e-4


def test_a_damaged_file_is_a_one_line_data_error(tiny_idx: IdxData, tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    fill_raw(tiny_idx, raw, gz=True)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    config = DataConfig(dataset="mnist", root=str(tmp_path), download=False)
    with pytest.raises(DataError, match=r"cannot read mnist in .*delete the damaged file"):
        load_splits(config, seed=0)


def test_split_is_fixed_by_the_seed_and_limit_applies_first(tiny_idx: IdxData) -> None:
    def config(limit: int | None) -> DataConfig:
        return DataConfig(
            dataset="idx",
            train_images=str(tiny_idx.train_images),
            train_labels=str(tiny_idx.train_labels),
            val_fraction=0.2,
            limit=limit,
        )

    a, b, c = (
        load_splits(config(None), 1),
        load_splits(config(None), 1),
        load_splits(config(None), 2),
    )
    assert bool((a.val_y == b.val_y).all()) and not bool((a.val_y == c.val_y).all())
    limited = load_splits(config(100), 1)
    assert (len(limited.train_x), len(limited.val_x)) == (80, 20)


def test_digits_is_bundled() -> None:
    splits = load_splits(DataConfig(dataset="digits", val_fraction=0.2), seed=0)
    assert splits.n_features == 64 and splits.n_classes == 10
    assert splits.test_x is not None
    assert len(splits.train_x) + len(splits.val_x) + len(splits.test_x) == 1797
    assert np.isclose(len(splits.val_x) / (len(splits.train_x) + len(splits.val_x)), 0.2, atol=0.01)
