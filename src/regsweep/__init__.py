"""regsweep: hyperparameter sweeps over the regularizers of a PyTorch MLP, on Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regsweep.config.loading import load_sweep
from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.errors import ConfigError, DataError, RegsweepError, StorageError, StudyError

if TYPE_CHECKING:
    from regsweep.insight.export import load_model
    from regsweep.insight.predictor import load_predictor
    from regsweep.sweep.launch import launch


def __getattr__(name: str) -> Any:
    # PyTorch takes seconds to import: only what trains (launch) pulls it in, so that
    # `regsweep validate`, `trials` and every bad-input error answer at once.
    # launch trains; load_model and load_predictor rebuild a model: all need it.
    if name == "launch":
        from regsweep.sweep.launch import launch

        return launch
    if name == "load_model":
        from regsweep.insight.export import load_model

        return load_model
    if name == "load_predictor":
        from regsweep.insight.predictor import load_predictor

        return load_predictor
    raise AttributeError(f"module 'regsweep' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "REGULARIZERS",
    "ConfigError",
    "DataError",
    "RegsweepError",
    "StorageError",
    "StudyError",
    "SweepConfig",
    "__version__",
    "launch",
    "load_model",
    "load_predictor",
    "load_sweep",
]
