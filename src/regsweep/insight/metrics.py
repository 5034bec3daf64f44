"""What a retrain measures, and which way is better, for every table, verdict and figure.

The names and directions of each task's metrics live in ``regsweep.data.tasks`` (loss
and accuracy for classification; loss, RMSE and R² for regression); this module adds
what insight needs on top: the headline, the secondary metric, labels and formatting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from regsweep.data.tasks import LOWER_IS_BETTER, is_percent, metric_names

__all__ = ["HEADLINE", "LOWER_IS_BETTER", "METRICS", "format_value", "label", "metrics_in"]

# The classification metrics: the default for results stored before regression existed.
METRICS: tuple[str, ...] = metric_names("classification")
# Every metric of every task, in a stable order (assessment, validation, test; loss first).
ALL_METRICS: tuple[str, ...] = tuple(
    dict.fromkeys(
        name
        for stage in ("assess", "val", "test")
        for task in ("classification", "regression")
        for name in metric_names(task, (stage,))
    )
)
# The value the study minimizes, on the rows that chose nothing: the verdict's headline
# (ablations stored before repetitions had "val_loss").
HEADLINE = "assess_loss"


def metrics_in(runs: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The metrics these runs measured (those of their task), in ALL_METRICS order."""
    seen = {key for run in runs for key in run}
    return tuple(m for m in ALL_METRICS if m in seen)


def secondary(metrics: Iterable[str]) -> str:
    """The metric a reader weighs a cost in (L1's sparsity "at which accuracy cost"):
    accuracy for classification, R² for regression."""
    names = set(metrics)
    stage = "assess" if any(m.startswith("assess_") for m in names) else "val"
    return f"{stage}_r2" if f"{stage}_r2" in names else f"{stage}_accuracy"


def label(metric: str) -> str:
    split, _, name = metric.partition("_")
    name = {"rmse": "RMSE", "r2": "R²"}.get(name, name.replace("_", " "))
    stage = {"val": "validation", "test": "test", "assess": "assessment"}.get(split, split)
    return f"{stage} {name}"


def format_value(metric: str, value: float | None, digits: int = 4, signed: bool = False) -> str:
    """A metric's value as the tables show it (accuracies as percentages)."""
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    if is_percent(metric):
        return f"{value:{sign}.{max(0, digits - 2)}%}"
    return f"{value:{sign}.{digits}f}"
