"""Load a data set once per process into tensors, split it, and keep it on the device.

Training batches are made by indexing these tensors with a shuffled permutation:
no DataLoader and no per-sample transforms, which is what makes a trial fast.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regsweep.config.schema import DataConfig
from regsweep.data.idx import read_idx
from regsweep.data.preprocess import image_preprocessor
from regsweep.data.tasks import regression_scores
from regsweep.errors import DataError

# File names torchvision's MNIST-style classes look for under ROOT/<Class>/raw.
_TORCHVISION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
# The digits set has no official test split; this fixed share is held out as one.
_DIGITS_TEST_FRACTION = 0.2
# A download that sends nothing for this long has failed (no network, a silent firewall);
# without it urllib would wait forever for every mirror in turn.
DOWNLOAD_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Splits:
    """Train / validation / optional test tensors, prepared with train statistics.

    For classification the targets are class indices (int64) into ``classes``; for
    regression they are float32, standardized with the training mean and standard
    deviation (``target_mean``, ``target_scale``), and ``n_classes`` is 1: the network's
    output width. ``preprocessor`` is the fitted scikit-learn transform from raw inputs
    to the network's inputs, which ``export`` saves.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    n_classes: int
    name: str
    task: str = "classification"
    classes: tuple[Any, ...] | None = None
    target_mean: float = 0.0
    target_scale: float = 1.0
    preprocessor: Any = field(default=None, compare=False, repr=False)

    def scores(self, stage: str, loss: float, accuracy: float) -> dict[str, float]:
        """Every metric of this task for split ``stage`` (val or test), by full name."""
        if self.task != "regression":
            return {f"{stage}_loss": loss, f"{stage}_accuracy": accuracy}
        rmse, r2 = regression_scores(loss, self._target_var[stage], self.target_scale)
        return {f"{stage}_loss": loss, f"{stage}_rmse": rmse, f"{stage}_r2": r2}

    @cached_property
    def _target_var(self) -> dict[str, float]:
        # R²'s denominator: the spread of the targets being scored, around their own mean.
        out = {"val": float(self.val_y.float().var(unbiased=False))}
        if self.test_y is not None:
            out["test"] = float(self.test_y.float().var(unbiased=False))
        return out

    @property
    def n_features(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def fingerprint(self) -> str:
        """A short hash of every tensor, so exported metrics name the exact data used."""
        digest = hashlib.sha256()
        for tensor in (
            self.train_x,
            self.train_y,
            self.val_x,
            self.val_y,
            self.test_x,
            self.test_y,
        ):
            if tensor is not None:
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError(
            "train.device: 'cuda' was asked for but no CUDA device is available "
            "(allowed here: auto, cpu)"
        )
    return torch.device(name)


def load_splits(config: DataConfig, seed: int, device: torch.device | str = "cpu") -> Splits:
    """The data set for ``config``, split with ``seed``, on ``device``; cached per process."""
    return _load_splits_cached(config.model_dump_json(), seed, str(device))


@functools.lru_cache(maxsize=4)
def _load_splits_cached(config_json: str, seed: int, device: str) -> Splits:
    config = DataConfig.model_validate_json(config_json)
    if config.dataset in ("table", "arrays", "torchvision"):
        from regsweep.data.prepare import prepare_splits  # pandas and scikit-learn: on use

        return prepare_splits(config, seed, device)
    images, labels, test_images, test_labels = _read_arrays(config)
    if config.limit is not None:
        images, labels = images[: config.limit], labels[: config.limit]
    if len(images) != len(labels):
        raise DataError(
            f"data: {len(images)} training images but {len(labels)} labels; they must match"
        )
    n_val = max(1, round(len(images) * config.val_fraction))
    if len(images) - n_val < 2:
        raise DataError(f"data: {len(images)} training samples leave nothing to train on")
    order = np.random.default_rng(seed).permutation(len(images))
    val_idx, train_idx = order[:n_val], order[n_val:]

    # Flatten, scale, and standardize with one mean and std over the training pixels.
    preprocessor = image_preprocessor().fit(images[train_idx])

    def prepare(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(preprocessor.transform(x)).to(device)

    def targets(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64)).to(device)

    n_classes = int(max(labels.max(), test_labels.max() if test_labels is not None else 0)) + 1
    return Splits(
        train_x=prepare(images[train_idx]),
        train_y=targets(labels[train_idx]),
        val_x=prepare(images[val_idx]),
        val_y=targets(labels[val_idx]),
        test_x=prepare(test_images) if test_images is not None else None,
        test_y=targets(test_labels) if test_labels is not None else None,
        n_classes=n_classes,
        name=config.dataset,
        classes=tuple(range(n_classes)),
        preprocessor=preprocessor,
    )


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def _read_arrays(config: DataConfig) -> Arrays:
    if config.dataset == "digits":
        return _read_digits()
    if config.dataset == "idx":
        return _read_idx_files(config)
    return _read_torchvision(config)


def _read_digits() -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.data / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(images))
    n_test = round(len(images) * _DIGITS_TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def _read_idx_files(config: DataConfig) -> Arrays:
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


def _read_torchvision(config: DataConfig) -> Arrays:
    """MNIST / Fashion-MNIST from ROOT/<Class>/raw, downloaded there by torchvision if allowed.

    The files are read with :func:`read_idx`, gzipped or not, so copying the four
    ``.gz`` files into that folder is enough offline (torchvision itself would insist
    on the uncompressed copies it extracts after a download).
    """
    class_name = _TORCHVISION_CLASS[config.dataset]
    root = Path(config.root).expanduser()
    raw = root / class_name / "raw"
    found = _find_raw_files(raw)
    reason = "download is off"
    if None in found and config.download:
        from filelock import FileLock
        from torchvision import datasets

        root.mkdir(parents=True, exist_ok=True)
        # Workers sharing one data folder (a compose volume) download once: the others
        # wait here, then find the files.
        with FileLock(str(root / f".{class_name}.download.lock")):
            found = _find_raw_files(raw)
            if None in found:
                try:
                    with socket_timeout(DOWNLOAD_TIMEOUT_S):
                        # One construction downloads all four files (training and test).
                        getattr(datasets, class_name)(str(root), train=True, download=True)
                except Exception as exc:  # torchvision raises RuntimeError, URLError...
                    reason = f"download failed ({short_reason(exc)})"
                found = _find_raw_files(raw)
    if None in found:
        raise DataError(
            f"data.dataset: {config.dataset} is not in {raw} and {reason}; expected "
            f"{', '.join(_TORCHVISION_FILES)} there. Offline: copy those files into {raw}, "
            "or use dataset: idx with train_images/train_labels, or dataset: digits"
        )
    try:
        arrays = [read_idx(path) for path in found if path is not None]
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"data.dataset: cannot read {config.dataset} in {raw} ({exc}); "
            "delete the damaged file to download it again"
        ) from None
    train_x, train_y, test_x, test_y = arrays
    return train_x, train_y, test_x, test_y


def _find_raw_files(raw: Path) -> list[Path | None]:
    """Each expected file, compressed or as torchvision extracts it, or None if absent."""
    found: list[Path | None] = []
    for name in _TORCHVISION_FILES:
        candidates = (raw / name, raw / name.removesuffix(".gz"))
        found.append(next((p for p in candidates if p.is_file()), None))
    return found


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation: urllib (under torchvision) waits forever by default."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def short_reason(exc: BaseException) -> str:
    # torchvision's message is "Error downloading X:\nTried MIRROR, got:\nREASON" per mirror;
    # the last reason (e.g. "Name or service not known") is what a user can act on.
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__
