"""Tensors on the device, from one pipeline for every data set.

A reader gives raw rows (``data.sources``), one splitter decides which rows train,
which choose and which assess (``data.resample``), and one preprocessor (with a
regression target's scale) is fitted on the training rows alone and applied to the
rest. The sweep's split and every repetition of ``ablate`` and ``paths`` go through the
same code, so they differ only in which rows play which role.

Training batches are made by indexing these tensors with a shuffled permutation:
no DataLoader and no per-sample transforms, which is what makes a trial fast.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from regsweep.config.schema import DataConfig
from regsweep.data.tasks import regression_scores
from regsweep.errors import DataError

if TYPE_CHECKING:
    from regsweep.data.resample import Partition
    from regsweep.data.sources import RawData

# Folds of a repetition's assessment rows: each repetition assesses one fifth of the
# training rows, and every round of five assesses each row once.
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Splits:
    """Train / validation / optional assessment and test tensors, prepared with train statistics.

    For classification the targets are class indices (int64) into ``classes``; for
    regression they are float32, standardized with the training mean and standard
    deviation (``target_mean``, ``target_scale``), and ``n_classes`` is 1: the network's
    output width. ``preprocessor`` is the fitted scikit-learn transform from raw inputs
    to the network's inputs, which ``export`` saves. A repetition's splits also have
    assessment rows (``assess_x``, ``assess_y``), which neither train nor choose.
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
    assess_x: torch.Tensor | None = None
    assess_y: torch.Tensor | None = None
    partition_key: str = ""  # which rows trained, chose and assessed (Partition.key)

    def scores(self, stage: str, loss: float, accuracy: float) -> dict[str, float]:
        """Every metric of this task for split ``stage`` (val, assess or test), by full name."""
        if self.task != "regression":
            return {f"{stage}_loss": loss, f"{stage}_accuracy": accuracy}
        rmse, r2 = regression_scores(loss, self._target_var[stage], self.target_scale)
        return {f"{stage}_loss": loss, f"{stage}_rmse": rmse, f"{stage}_r2": r2}

    def stage(self, stage: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The inputs and targets of ``stage`` (train, val, assess, test), if it exists."""
        x, y = getattr(self, f"{stage}_x"), getattr(self, f"{stage}_y")
        return None if x is None or y is None else (x, y)

    @cached_property
    def _target_var(self) -> dict[str, float]:
        # R²'s denominator: the spread of the targets being scored, around their own mean.
        return {
            stage: float(found[1].float().var(unbiased=False))
            for stage in ("val", "assess", "test")
            if (found := self.stage(stage)) is not None
        }

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
            self.assess_x,
            self.assess_y,
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
    """The sweep's split of ``config``'s data with ``seed``, on ``device``; cached per process."""
    return _load_splits_cached(config.model_dump_json(), seed, str(device))


@functools.lru_cache(maxsize=4)
def _load_splits_cached(config_json: str, seed: int, device: str) -> Splits:
    from regsweep.data.resample import sweep_partition

    config = DataConfig.model_validate_json(config_json)
    raw = read_rows(config)
    partition = sweep_partition(raw.y, raw.task, config.val_fraction, seed)
    return build_splits(raw, partition, device)


def load_repetition(
    config: DataConfig,
    study_seed: int,
    index: int,
    device: torch.device | str = "cpu",
    *,
    folds: int = DEFAULT_FOLDS,
) -> Splits:
    """Repetition ``index`` of ``ablate`` and ``paths``: fit, validation and assessment rows
    drawn afresh from the training data (``data.resample.repetition``), the preprocessor
    refitted on the fit rows; the test rows, if any, are the data set's own. Cached per
    process, like :func:`load_splits`: a worker training one variant at a time, and the
    gradient-boosting reference, ask for the same repetition in turn."""
    return _load_repetition_cached(config.model_dump_json(), study_seed, index, str(device), folds)


@functools.lru_cache(maxsize=2)
def _load_repetition_cached(
    config_json: str, study_seed: int, index: int, device: str, folds: int
) -> Splits:
    from regsweep.data.resample import repetition

    config = DataConfig.model_validate_json(config_json)
    raw = read_rows(config)
    partition = repetition(
        raw.y,
        raw.task,
        study_seed=study_seed,
        index=index,
        folds=folds,
        val_fraction=config.val_fraction,
    )
    return build_splits(raw, partition, device)


def read_rows(config: DataConfig) -> RawData:
    """``config``'s raw rows, read once per process (every repetition splits them anew)."""
    return _read_rows_cached(config.model_dump_json())


@functools.lru_cache(maxsize=2)
def _read_rows_cached(config_json: str) -> RawData:
    # pandas and scikit-learn are imported on use: a worker that only trains pays for them
    # once, here, and the CLI's bad-input errors not at all.
    from regsweep.data.sources import read_source

    return read_source(DataConfig.model_validate_json(config_json))


def build_splits(raw: RawData, partition: Partition, device: str) -> Splits:
    """Fit the preprocessor and the target's scale on ``partition.fit``, apply them to all."""
    from regsweep.data.preprocess import transform

    targets = _Targets.fit(raw)
    fit_rows = raw.rows(partition.fit)
    preprocessor = raw.make_preprocessor().fit(fit_rows)
    targets.rescale(raw.y[partition.fit])

    def inputs(rows: Any) -> torch.Tensor:
        return torch.from_numpy(transform(preprocessor, rows)).to(device)

    def labels(y: np.ndarray, key: str) -> torch.Tensor:
        return targets.encode(y, key).to(device)

    assess = partition.assess
    has_test = raw.test_x is not None and raw.test_y is not None
    regression = raw.task == "regression"
    return Splits(
        train_x=inputs(fit_rows),
        train_y=labels(raw.y[partition.fit], "path"),
        val_x=inputs(raw.rows(partition.val)),
        val_y=labels(raw.y[partition.val], "path"),
        test_x=inputs(raw.test_x) if has_test else None,
        test_y=labels(raw.test_y, raw.test_key) if has_test else None,  # type: ignore[arg-type]
        n_classes=1 if regression else len(targets.classes),
        name=raw.name,
        task=raw.task,
        classes=None if regression else tuple(_plain(c) for c in targets.classes),
        target_mean=targets.mean,
        target_scale=targets.scale,
        preprocessor=preprocessor,
        assess_x=inputs(raw.rows(assess)) if assess is not None else None,
        assess_y=labels(raw.y[assess], "path") if assess is not None else None,
        partition_key=partition.key(),
    )


class _Targets:
    """Class labels to indices, or a number's standardization, fitted on training rows."""

    def __init__(self, task: str, classes: np.ndarray, where: str) -> None:
        self.task = task
        self.classes = classes
        self.where = where
        self.mean, self.scale = 0.0, 1.0

    @classmethod
    def fit(cls, raw: RawData) -> _Targets:
        if raw.task == "regression":
            return cls(raw.task, np.array([]), raw.where)
        if raw.classes is not None:
            return cls(raw.task, np.asarray(raw.classes), raw.where)
        # Every label of the training file is a class, even one the validation rows take.
        classes = np.unique(np.asarray(raw.y))
        if len(classes) < 2:
            raise DataError(
                f"data.target: {raw.where} has one class ({classes[0]!r}); classification needs "
                "at least 2 (allowed: 2 or more labels, or task: regression)"
            )
        return cls(raw.task, classes, raw.where)

    def rescale(self, train_y: np.ndarray) -> None:
        if self.task == "regression":
            values = train_y.astype(np.float64)
            self.mean, self.scale = float(values.mean()), float(values.std()) or 1.0

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
