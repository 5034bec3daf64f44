"""Image data sets from torchvision: MNIST and Fashion-MNIST, and any other by class name.

``dataset: mnist`` / ``fashion_mnist`` read the four IDX files under ROOT/<Class>/raw
(gzipped or as torchvision extracts them), downloading them with torchvision where they
are missing and downloads are allowed. ``dataset: torchvision`` with ``name: KMNIST``,
``name: EMNIST`` and ``split: balanced``, ``name: CIFAR10``, ... builds the named class,
bounded by the same timeout and file lock. Either way the images come back as raw arrays
(uint8, samples first) with their labels; scaling is the preprocessor's job.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from regsweep.config.schema import DataConfig
from regsweep.data.download import DOWNLOAD_TIMEOUT_S, short_reason, socket_timeout
from regsweep.data.idx import read_idx
from regsweep.errors import DataError

# Named in errors; any torchvision class that takes `train` or `split` works.
KNOWN = "MNIST, FashionMNIST, KMNIST, EMNIST (with split), QMNIST, USPS, CIFAR10, CIFAR100, SVHN"

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]

# File names torchvision's MNIST-style classes look for under ROOT/<Class>/raw.
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_MNIST_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def read_mnist(config: DataConfig) -> Arrays:
    """MNIST / Fashion-MNIST from ROOT/<Class>/raw, downloaded there by torchvision if allowed.

    The files are read with :func:`read_idx`, gzipped or not, so copying the four
    ``.gz`` files into that folder is enough offline (torchvision itself would insist
    on the uncompressed copies it extracts after a download).
    """
    class_name = _MNIST_CLASS[config.dataset]
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
            f"{', '.join(MNIST_FILES)} there. Offline: copy those files into {raw}, "
            "or use dataset: idx with train_images/train_labels, or dataset: digits"
        )
    try:
        train_x, train_y, test_x, test_y = (read_idx(path) for path in found if path is not None)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"data.dataset: cannot read {config.dataset} in {raw} ({exc}); "
            "delete the damaged file to download it again"
        ) from None
    return train_x, train_y, test_x, test_y


def _find_raw_files(raw: Path) -> list[Path | None]:
    """Each expected file, compressed or as torchvision extracts it, or None if absent."""
    found: list[Path | None] = []
    for name in MNIST_FILES:
        candidates = (raw / name, raw / name.removesuffix(".gz"))
        found.append(next((p for p in candidates if p.is_file()), None))
    return found


def read_torchvision(config: DataConfig) -> Arrays:
    """Training and test images (uint8, samples first) and labels of ``config.name``."""
    from filelock import FileLock
    from torchvision import datasets

    name = str(config.name)
    cls: Any = getattr(datasets, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, datasets.VisionDataset)):
        raise DataError(f"data.name: torchvision has no data set {name!r} (allowed: {KNOWN}, ...)")
    factory: Any = cls  # a VisionDataset subclass, whose constructors differ
    params = _init_params(cls, datasets.VisionDataset)
    extra: dict[str, Any] = {}
    if "split" in params and "train" in params:
        if config.split is None:
            raise DataError(f"data.split: torchvision {name} needs split (see its documentation)")
        extra["split"] = config.split
    elif config.split is not None:
        raise DataError(f"data.split: torchvision {name} takes no split (allowed: leave it out)")
    which: tuple[dict[str, Any], dict[str, Any]]
    if "train" in params:
        which = ({"train": True}, {"train": False})
    elif "split" in params:
        which = ({"split": "train"}, {"split": "test"})
    else:
        raise DataError(
            f"data.name: torchvision {name} has no train/test split regsweep can read "
            f"(allowed: {KNOWN})"
        )
    root = Path(config.root).expanduser()

    def build(download: bool) -> tuple[Any, Any]:
        train, test = (factory(str(root), download=download, **extra, **part) for part in which)
        return train, test

    try:
        sets: tuple[Any, Any] | None = build(download=False)
    except ValueError as exc:  # a bad split: torchvision's verify_str_arg says what it allows
        raise DataError(f"data.split: {_last_line(exc)}") from None
    except RuntimeError as exc:
        reason = "download is off"
        sets = None
        if config.download:
            root.mkdir(parents=True, exist_ok=True)
            # Workers sharing one data folder download once; the others wait, then read.
            with FileLock(str(root / f".{name}.download.lock")):
                try:
                    with socket_timeout(DOWNLOAD_TIMEOUT_S):
                        sets = build(download=True)
                except Exception as download_exc:  # RuntimeError, URLError, timeouts...
                    reason = f"download failed ({short_reason(download_exc)})"
        if sets is None:
            raise DataError(
                f"data.name: torchvision {name} is not in {root} and {reason} "
                f"({_last_line(exc)}). Offline: copy its files into {root} as torchvision "
                "lays them out, or use dataset: table, arrays, idx or digits"
            ) from None
    assert sets is not None
    train, test = sets
    return (*_arrays(train, name), *_arrays(test, name))


def _init_params(cls: type, base: type) -> set[str]:
    """The keyword names ``cls(...)`` takes, following ``**kwargs`` up to its parents
    (EMNIST takes ``split`` and passes ``train`` on to MNIST)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is base:
            break
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _arrays(dataset: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    data = getattr(dataset, "data", None)
    labels = getattr(dataset, "targets", getattr(dataset, "labels", None))
    if data is None or labels is None:
        # The general way, slower: every sample through __getitem__ (PIL images).
        pairs = [dataset[i] for i in range(len(dataset))]
        data = np.stack([np.asarray(image) for image, _ in pairs])
        labels = [label for _, label in pairs]
    x = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    y = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"data.name: torchvision {name} has labels of shape {y.shape} ({y.dtype}); "
            "allowed: a classification data set with one integer label per image"
        )
    return x, y.astype(np.int64)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
