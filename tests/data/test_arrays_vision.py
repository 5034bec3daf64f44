"""dataset: arrays (.npz) and dataset: torchvision (any classification set by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regsweep.config.schema import DataConfig
from regsweep.data.idx import write_idx
from regsweep.data.splits import load_splits
from regsweep.errors import DataError
from tests.conftest import make_idx_dataset


def arrays(path: Path, **keys: object) -> DataConfig:
    return DataConfig.model_validate({"dataset": "arrays", "path": str(path), **keys})


def test_npz_classification_and_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3, 4)).astype(np.float32)
    x[5, 0, 0] = np.nan  # a gap: imputed, with an indicator column
    labels = np.array(["cat", "dog"])[(x[:, 0, 1] > 0).astype(int)]
    np.savez(tmp_path / "c.npz", x=x, y=labels)
    np.savez(tmp_path / "t.npz", x=x[:50], y=labels[:50])
    splits = load_splits(arrays(tmp_path / "c.npz", test_path=str(tmp_path / "t.npz")), 0)
    assert splits.task == "classification" and splits.classes == ("cat", "dog")
    assert splits.n_features == 12 + 1  # 3 x 4 flattened, plus one indicator
    assert splits.test_x is not None and len(splits.test_x) == 50
    assert float(splits.train_x.abs().max()) < 10  # standardized per feature

    np.savez(tmp_path / "r.npz", x=x, y=x[:, 1, 1] * 100.0 + rng.normal(size=200))
    splits = load_splits(arrays(tmp_path / "r.npz", test_fraction=0.25), 0)
    assert splits.task == "regression" and splits.n_classes == 1
    assert splits.test_y is not None and len(splits.test_y) == 50


def test_bad_npz_files_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", features=np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"data.path: .*a.npz has no array x, y"):
        load_splits(arrays(tmp_path / "a.npz"), 0)
    np.savez(tmp_path / "b.npz", x=np.zeros((4, 2)), y=np.zeros(5))
    with pytest.raises(DataError, match=r"data.path: .*b.npz has x of shape \(4, 2\)"):
        load_splits(arrays(tmp_path / "b.npz"), 0)
    (tmp_path / "c.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"data.path: cannot read .*c.npz as .npz"):
        load_splits(arrays(tmp_path / "c.npz"), 0)
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 2)), y=np.r_[np.zeros(39), np.nan])
    with pytest.raises(DataError, match=r"data.path: y in .*d.npz is NaN at 1 row"):
        load_splits(arrays(tmp_path / "d.npz"), 0)
    np.savez(tmp_path / "e.npz", x=np.zeros((40, 2)), y=np.zeros(40, dtype=int))
    with pytest.raises(DataError, match=r"data.target: .*one class"):
        load_splits(arrays(tmp_path / "e.npz"), 0)


def vision(root: Path, name: str = "KMNIST", **keys: object) -> DataConfig:
    return DataConfig.model_validate(
        {"dataset": "torchvision", "name": name, "root": str(root), **keys}
    )


def test_torchvision_by_name_reads_what_torchvision_lays_out(tmp_path: Path) -> None:
    # KMNIST's files are in MNIST's IDX format, uncompressed under ROOT/KMNIST/raw, which is
    # where torchvision's own download puts them; torchvision itself reads them here.
    data = make_idx_dataset(tmp_path / "gen", n_train=300, n_test=100, side=28)
    raw = tmp_path / "root" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    from regsweep.data.idx import read_idx

    for source, name in (
        (data.train_images, "train-images-idx3-ubyte"),
        (data.train_labels, "train-labels-idx1-ubyte"),
        (data.test_images, "t10k-images-idx3-ubyte"),
        (data.test_labels, "t10k-labels-idx1-ubyte"),
    ):
        write_idx(raw / name, read_idx(source))
    splits = load_splits(vision(tmp_path / "root", download=False), 0)
    assert splits.n_features == 784 and splits.n_classes == 10
    assert splits.test_x is not None and len(splits.test_x) == 100
    assert len(splits.train_x) + len(splits.val_x) == 300
    assert abs(float(splits.train_x.mean())) < 1e-3  # standardized with training statistics


def test_torchvision_offline_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_splits(vision(tmp_path, "CIFAR10", download=False), 0)
    message = str(info.value)
    assert "torchvision CIFAR10 is not in" in message and "download is off" in message
    assert "Offline:" in message
    with pytest.raises(DataError, match=r"data\.name: torchvision has no data set 'Nope'"):
        load_splits(vision(tmp_path, "Nope"), 0)
    with pytest.raises(DataError, match=r"data\.split: torchvision EMNIST needs split"):
        load_splits(vision(tmp_path, "EMNIST", download=False), 0)
    with pytest.raises(DataError, match=r"data\.split: "):
        load_splits(vision(tmp_path, "EMNIST", split="nope", download=False), 0)
