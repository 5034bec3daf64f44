"""The two tasks and their metrics: the one list every other module reads.

Plain Python (no pandas, no torch), so the CLI's tables import it at no cost.

A classification trial measures loss (cross-entropy) and accuracy; a regression trial
loss (MSE on the standardized target, what the pruner sees), RMSE (in the target's own
units) and R². Tables, trial attributes, ablation, report and export take the names and
their directions from here, so a metric is added in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")

# Per split (val_, test_): the metric suffixes of each task, the loss first.
STAGE_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("loss", "accuracy"),
    "regression": ("loss", "rmse", "r2"),
}
# Direction of every metric suffix: True when a smaller value is better.
LOWER_IS_BETTER_SUFFIX: dict[str, bool] = {
    "loss": True,
    "accuracy": False,
    "rmse": True,
    "r2": False,
}
# Suffixes shown as percentages.
PERCENT_SUFFIXES = frozenset({"accuracy"})


def metric_names(task: str, stages: tuple[str, ...] = ("val", "test")) -> tuple[str, ...]:
    """``val_loss, val_accuracy, test_loss, test_accuracy`` (or the regression ones)."""
    return tuple(f"{stage}_{m}" for stage in stages for m in STAGE_METRICS[task])


def suffix(metric: str) -> str:
    return metric.split("_", 1)[1] if "_" in metric else metric


def lower_is_better(metric: str) -> bool:
    return LOWER_IS_BETTER_SUFFIX[suffix(metric)]


def is_percent(metric: str) -> bool:
    return suffix(metric) in PERCENT_SUFFIXES


# Every known metric name of every task, with its direction.
LOWER_IS_BETTER: dict[str, bool] = {
    name: lower_is_better(name)
    for task in TASKS
    for name in metric_names(task, ("assess", "val", "test"))
}


def best_attrs(task: str) -> tuple[str, ...]:
    """The trial user attributes that hold the best epoch's scores besides the loss."""
    return tuple(f"best_val_{m}" for m in STAGE_METRICS[task][1:])


def task_of_attrs(attrs: Mapping[str, Any]) -> Task:
    """A trial's task from what it stored: only regression trials store an RMSE."""
    return "regression" if "best_val_rmse" in attrs or "val_rmse" in attrs else "classification"


def regression_scores(mse: float, target_var: float, target_scale: float) -> tuple[float, float]:
    """RMSE in the target's units and R², from the MSE on the standardized target.

    ``target_var`` is the variance of the standardized targets being scored (R²'s total
    sum of squares per sample), ``target_scale`` the standard deviation used to standardize.
    """
    rmse = math.sqrt(mse) * target_scale if math.isfinite(mse) and mse >= 0 else math.nan
    r2 = 1.0 - mse / target_var if target_var > 0 else math.nan
    return rmse, r2


def format_metric(metric: str, value: Any) -> str:
    """A metric's value as tables show it: accuracies as percentages, others as numbers."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if math.isnan(value):
        return "-"
    return f"{value:.2%}" if is_percent(metric) else f"{value:#.4g}"


def best_scores(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's best-epoch scores besides the loss, by metric name (val_accuracy, ...)."""
    task = task_of_attrs(attrs)
    return {name.removeprefix("best_"): attrs.get(name) for name in best_attrs(task)}


def scores_text(attrs: Mapping[str, Any]) -> str:
    """``val_accuracy 97.10%`` or ``val_rmse 52.3, val_r2 0.481``; empty when none stored."""
    return ", ".join(
        f"{name} {format_metric(name, value)}"
        for name, value in best_scores(attrs).items()
        if isinstance(value, int | float)
    )
