"""The sweep file: the contract between a user and regsweep.

Every key is declared here, validated here, and documented in the README's
sweep-file reference. Unknown keys are errors, and every error names its key
path and the values allowed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from regsweep.storage.settings import (
    DEFAULT_GRACE_PERIOD_S,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_MAX_RETRY,
    DEFAULT_STORAGE,
)

REGULARIZERS: tuple[str, ...] = ("dropout", "weight_decay", "l1", "batch_norm", "patience")


class _Section(BaseModel):
    """Base of every section: unknown keys are refused, so typos cannot pass silently."""

    model_config = ConfigDict(extra="forbid")


class _NamedComponent(_Section):
    """An Optuna component picked by name; ``options`` go to its constructor."""

    name: str  # narrowed to the allowed names by each subclass
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_name(cls, value: Any) -> Any:
        # `sampler: tpe` is shorthand for `sampler: {name: tpe}`.
        return {"name": value} if isinstance(value, str) else value


class SamplerConfig(_NamedComponent):
    """Which Optuna sampler proposes the next trial."""

    name: Literal["tpe", "random", "gp", "cmaes", "grid"] = "tpe"


class PrunerConfig(_NamedComponent):
    """Which Optuna pruner stops trials that fall behind."""

    name: Literal["hyperband", "median", "successive_halving", "none"] = "hyperband"


class StudyConfig(_Section):
    name: str | None = Field(default=None, min_length=1)
    storage: str = DEFAULT_STORAGE
    direction: Literal["minimize"] = "minimize"
    n_trials: int = Field(default=50, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    pack: int = Field(default=1, ge=1, le=256)
    # Heartbeats run in their own thread, so a long epoch never makes a live trial stale.
    heartbeat_interval: int = Field(default=DEFAULT_HEARTBEAT_INTERVAL_S, ge=1)
    grace_period: int = Field(default=DEFAULT_GRACE_PERIOD_S, ge=2)
    max_retry: int = Field(default=DEFAULT_MAX_RETRY, ge=0)

    @model_validator(mode="after")
    def _grace_outlasts_heartbeat(self) -> StudyConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period ({self.grace_period}) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval}), or live trials would be failed"
            )
        return self


# Which keys belong to which data sets; any other data set refuses them (a typo-proof
# contract: a `target` given to mnist is a mistake, not something to ignore).
_IDX_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
_FILE_KEYS = ("path", "test_path", "test_fraction")
_TABLE_KEYS = (
    "target",
    "features",
    "drop",
    "categorical",
    "sep",
    "skiprows",
    "na_values",
    "decimal",
    "thousands",
    "encoding",
    "scaler",
)
# How a table's numeric columns are scaled when the sweep file does not say
# (BENCHMARKS.md, "Tabular", has the evidence). Filled into the config, so a study stores it.
DEFAULT_SCALER: Literal["standard", "quantile", "robust"] = "robust"
# What every table study stored before data.scaler existed was trained with.
_SCALER_BEFORE_THE_KEY = "standard"
_VISION_KEYS = ("name", "split")


class DataConfig(_Section):
    dataset: Literal[
        "mnist", "fashion_mnist", "idx", "digits", "table", "arrays", "torchvision"
    ] = "mnist"
    root: str = "data"
    download: bool = True
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    train_images: str | None = None
    train_labels: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    limit: int | None = Field(default=None, ge=10)
    # dataset: table (CSV, TSV, Parquet) and arrays (.npz with keys x and y).
    path: str | None = Field(default=None, min_length=1)
    test_path: str | None = Field(default=None, min_length=1)
    # Without a test file: hold out this share of `path` as the test split, with a fixed
    # seed (not the study's), so every study of the file is tested on the same rows.
    test_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    target: str | None = Field(default=None, min_length=1)
    features: list[str] | None = Field(default=None, min_length=1)
    drop: list[str] | None = None
    categorical: list[str] | None = None  # None: the columns whose dtype is not numeric
    sep: str | None = Field(default=None, min_length=1)  # None: from the file's extension
    skiprows: int = Field(default=0, ge=0)
    # Cell texts read as missing besides pandas' own ("", NA, n/a, NaN, null, ...): "?", "-".
    na_values: list[str] | None = None
    # CSV only: the decimal mark and the thousands separator ("1.234,5" with sep: ";").
    decimal: str | None = Field(default=None, min_length=1, max_length=1)
    thousands: str | None = Field(default=None, min_length=1, max_length=1)
    encoding: str | None = Field(default=None, min_length=1)  # None: UTF-8 (a BOM is fine)
    # Numeric columns: standard (z-score), quantile (to a normal) or robust (median/IQR,
    # smoothly clipped). None: DEFAULT_SCALER, filled in for dataset: table.
    scaler: Literal["standard", "quantile", "robust"] | None = None
    # None: inferred from the target (integer, text or boolean with few classes: classification).
    task: Literal["classification", "regression"] | None = None
    # dataset: torchvision, e.g. name: KMNIST, or name: EMNIST with split: balanced.
    name: str | None = Field(default=None, min_length=1)
    split: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _keys_belong_to_their_dataset(self) -> DataConfig:
        owners = {
            "idx": _IDX_KEYS,
            "table": _FILE_KEYS + _TABLE_KEYS,
            "arrays": _FILE_KEYS,
            "torchvision": _VISION_KEYS,
        }
        own = owners.get(self.dataset, ())
        defaults = {"skiprows": 0}
        stray = [
            key
            for keys in owners.values()
            for key in keys
            if key not in own and getattr(self, key) != defaults.get(key)
        ]
        if stray:
            takers = {key: name for name, keys in owners.items() for key in keys if key in stray}
            raise ValueError(
                "; ".join(f"{k} applies to dataset '{takers[k]}' only" for k in stray)
                + f", not to '{self.dataset}'"
            )
        if self.dataset == "idx":
            if self.train_images is None or self.train_labels is None:
                raise ValueError(
                    "dataset 'idx' needs train_images and train_labels (IDX files, raw or .gz)"
                )
            if (self.test_images is None) != (self.test_labels is None):
                raise ValueError("give both test_images and test_labels, or neither")
        if self.dataset in ("table", "arrays") and self.path is None:
            kind = "a CSV, TSV or Parquet file" if self.dataset == "table" else "an .npz file"
            raise ValueError(f"dataset '{self.dataset}' needs path ({kind})")
        if self.test_path is not None and self.test_fraction is not None:
            raise ValueError("give test_path (a test file) or test_fraction, not both")
        if self.dataset == "table":
            if self.target is None:
                raise ValueError("dataset 'table' needs target: the name of the label column")
            if self.features is not None and self.drop:
                raise ValueError("give features (columns to use) or drop (columns to leave out)")
            if self.decimal is not None and self.decimal == self.thousands:
                raise ValueError(
                    f"decimal and thousands are both {self.decimal!r} (allowed: two different "
                    "marks, such as decimal: ',' with thousands: '.')"
                )
            if self.scaler is None:
                self.scaler = DEFAULT_SCALER
        if self.dataset == "torchvision" and self.name is None:
            raise ValueError(
                "dataset 'torchvision' needs name: a torchvision classification data set "
                "such as KMNIST, EMNIST (with split), CIFAR10"
            )
        if self.task == "regression" and self.dataset not in ("table", "arrays"):
            raise ValueError(
                f"task 'regression' needs dataset table or arrays; '{self.dataset}' has "
                "class labels (allowed here: classification)"
            )
        return self


class ModelConfig(_Section):
    hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    activation: Literal["relu", "gelu", "tanh", "silu", "elu", "leaky_relu"] = "relu"

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, widths: list[int]) -> list[int]:
        if any(width < 1 for width in widths):
            raise ValueError(f"every hidden width must be >= 1, got {widths}")
        return widths


class TrainConfig(_Section):
    max_epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=128, ge=2)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_delta: float = Field(default=0.0, ge=0.0)
    # PyTorch's intra-op threads; None keeps its default (one per core). Small networks run
    # fastest on one thread, which also keeps parallel workers from fighting over cores.
    threads: int | None = Field(default=None, ge=1)


class ParamSpec(_Section):
    """One regularizer's place in the search space: a fixed value, a range, or choices.

    In the file a fixed value is written bare (``dropout: 0.0``); it is stored as
    ``{value: 0.0}`` so that every form has one type.
    """

    value: bool | int | float | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[bool | int | float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_value_is_fixed(cls, raw: Any) -> Any:
        return raw if isinstance(raw, dict) else {"value": raw}

    @model_validator(mode="after")
    def _exactly_one_form(self) -> ParamSpec:
        forms = [
            self.value is not None,
            self.low is not None or self.high is not None,
            self.choices is not None,
        ]
        if sum(forms) != 1:
            raise ValueError("write a fixed value, {low, high[, log, step]} or {choices: [...]}")
        if forms[1] and (self.low is None or self.high is None):
            raise ValueError("a range needs both low and high")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty (allowed: a list such as [false, true])")
        if (self.log or self.step is not None) and not forms[1]:
            raise ValueError("log and step only apply to a {low, high} range")
        return self

    @model_serializer(mode="plain")
    def _compact(self) -> Any:
        # Serialize back to the form a user writes, so stored configs read like sweep files.
        if self.value is not None:
            return self.value
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    @property
    def is_fixed(self) -> bool:
        return self.value is not None

    def candidate_values(self) -> list[Any]:
        """Every value named in the spec (for bound checks); a range contributes its ends."""
        if self.value is not None:
            return [self.value]
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class _Rule:
    """What one regularizer accepts, in words a user can act on."""

    kind: type
    allowed: str
    low: float | None = None
    high: float | None = None
    high_open: bool = False

    def accepts(self, value: Any) -> bool:
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not float(value).is_integer():
            return False
        if not math.isfinite(float(value)):
            return False
        if self.low is not None and value < self.low:
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )


RULES: dict[str, _Rule] = {
    "dropout": _Rule(float, "a rate with 0 <= dropout < 1", low=0.0, high=1.0, high_open=True),
    "weight_decay": _Rule(float, "a number >= 0", low=0.0),
    "l1": _Rule(float, "a number >= 0", low=0.0),
    "batch_norm": _Rule(bool, "true or false"),
    "patience": _Rule(int, "an integer number of epochs >= 1", low=1),
}


def _is_whole(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()


def _default_spec(value: Any) -> Any:
    return Field(default_factory=lambda: ParamSpec(value=value))


class SearchSpace(_Section):
    """Exactly the five regularizers; their names are also the Optuna parameter names."""

    dropout: ParamSpec = _default_spec(0.0)
    weight_decay: ParamSpec = _default_spec(0.0)
    l1: ParamSpec = _default_spec(0.0)
    batch_norm: ParamSpec = _default_spec(False)
    # Patience >= max_epochs means early stopping never triggers: off by default.
    patience: ParamSpec = _default_spec(1000)

    @field_validator(*REGULARIZERS)
    @classmethod
    def _within_rule(cls, spec: ParamSpec, info: Any) -> ParamSpec:
        name: str = info.field_name
        rule = RULES[name]
        for value in spec.candidate_values():
            if not rule.accepts(value):
                shown = int(value) if rule.kind is int and _is_whole(value) else value
                raise ValueError(f"{shown!r} is not allowed (allowed: {rule.allowed})")
        if spec.low is not None and spec.high is not None:
            if rule.kind is bool:
                raise ValueError("batch_norm takes true, false or {choices: [true, false]}")
            if spec.low > spec.high:
                raise ValueError(
                    f"low ({spec.low:g}) is greater than high ({spec.high:g}); allowed: low <= high"
                )
            if spec.log and spec.low <= 0:
                raise ValueError(
                    f"a log range needs low > 0, got low={spec.low:g} "
                    "(allowed: low > 0 with log: true, or a fixed 0 to turn it off)"
                )
            if spec.log and spec.step is not None:
                raise ValueError("a range takes log or step, not both")
            if spec.step is not None and spec.step <= 0:
                raise ValueError(f"step must be > 0, got {spec.step:g}")
            if rule.kind is int and spec.step is not None and not float(spec.step).is_integer():
                raise ValueError(f"{name} is an integer, so step must be one too")
            if rule.kind is int:
                spec = spec.model_copy(
                    update={
                        "low": int(spec.low),
                        "high": int(spec.high),
                        "step": None if spec.step is None else int(spec.step),
                    }
                )
        return spec

    def fixed_params(self) -> dict[str, Any]:
        return {name: spec.value for name, spec in self.items() if spec.is_fixed}

    def items(self) -> list[tuple[str, ParamSpec]]:
        return [(name, getattr(self, name)) for name in REGULARIZERS]


def parse_min_effect(value: Any) -> float | str:
    """``0.01`` (in the loss's own units) or ``"5%"`` (of the best config's loss), checked."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1])
        except ValueError:
            share = math.nan
        if not 0 < share < 100:
            raise ValueError(
                f"{value!r} is not allowed (allowed: a share of the best config's loss such as "
                "'5%', between 0% and 100%, or a loss difference such as 0.01)"
            )
        return f"{share:g}%"
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(
            f"{value!r} is not allowed (allowed: a loss difference > 0 such as 0.01, or a "
            "share of the best config's loss such as '5%')"
        )
    if not math.isfinite(float(value)):
        raise ValueError(f"{value!r} is not allowed (allowed: a finite number > 0)")
    return float(value)


class VerdictConfig(_Section):
    """How ``ablate`` and ``paths`` decide; read by them only, never by a trial, so a
    resumed study may change it freely."""

    # The smallest effect that matters: an effect whose interval lies inside ±min_effect
    # is negligible. A share of the best config's loss ("5%"; ablate measures it on its
    # first look's assessment rows), or a loss difference.
    min_effect: float | str = "5%"
    # ablate adds repetitions, one round of `folds` at a time, until every effect is
    # decided or this many have run.
    max_repeats: int = Field(default=30, ge=2, le=1000)
    # Each repetition assesses one fold in `folds` of the training rows (a round of
    # `folds` repetitions assesses every row once).
    folds: int = Field(default=5, ge=2, le=20)

    @field_validator("min_effect", mode="before")
    @classmethod
    def _share_or_difference(cls, value: Any) -> float | str:
        return parse_min_effect(value)

    def min_effect_for(self, best_loss: float) -> float:
        """``min_effect`` in the loss's units, given the best config's loss."""
        return min_effect_value(self.min_effect, best_loss)


def min_effect_value(spec: float | str, best_loss: float) -> float:
    if isinstance(spec, str):
        return float(spec.rstrip("%")) / 100 * abs(best_loss)
    return float(spec)


class SweepConfig(_Section):
    """The whole sweep file, after defaults."""

    study: StudyConfig = Field(default_factory=StudyConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)

    @property
    def study_name(self) -> str:
        # resolve_config always fills it; the fallback keeps the type a plain str.
        return self.study.name or "regsweep"

    def worst_case_epochs(self) -> int:
        return self.study.n_trials * self.train.max_epochs


def as_stored_then(raw: dict[str, Any]) -> dict[str, Any]:
    """A config stored with a study, with the defaults of the regsweep that stored it.

    A table study stored before ``data.scaler`` existed was standardized; read with
    today's default it would be rebuilt (by export, ablate, a resume) with another scaler.
    """
    data = raw.get("data")
    if isinstance(data, dict) and data.get("dataset") == "table" and "scaler" not in data:
        return {**raw, "data": {**data, "scaler": _SCALER_BEFORE_THE_KEY}}
    return raw
