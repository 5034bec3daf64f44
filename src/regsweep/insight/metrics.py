"""The one list of what a retrain measures, and which way is better: every table, verdict
and figure reads it from here, so other metrics (a regression's RMSE, R²) drop in."""

from __future__ import annotations

from collections.abc import Sequence

# What ``engine.fit.evaluate`` returns, in order, for one split of the data.
SPLIT_METRICS: tuple[str, ...] = ("loss", "accuracy")
SPLITS: tuple[str, ...] = ("val", "test")
METRICS: tuple[str, ...] = tuple(f"{split}_{m}" for split in SPLITS for m in SPLIT_METRICS)
LOWER_IS_BETTER: dict[str, bool] = {
    "val_loss": True,
    "val_accuracy": False,
    "test_loss": True,
    "test_accuracy": False,
}
# The value the study minimizes: the verdict's headline.
HEADLINE = "val_loss"
# The metric a reader weighs a cost in (L1's sparsity "at which accuracy cost").
SECONDARY = "val_accuracy"
PERCENT_METRICS: frozenset[str] = frozenset({"val_accuracy", "test_accuracy"})


def split_metrics(split: str, values: Sequence[float]) -> dict[str, float]:
    """``evaluate``'s tuple for ``split`` as named metrics: ``{"val_loss": ..., ...}``."""
    return {f"{split}_{name}": float(v) for name, v in zip(SPLIT_METRICS, values, strict=True)}


def label(metric: str) -> str:
    split, _, name = metric.partition("_")
    return f"{ {'val': 'validation', 'test': 'test'}.get(split, split) } {name.replace('_', ' ')}"


def format_value(metric: str, value: float | None, digits: int = 4, signed: bool = False) -> str:
    """A metric's value as the tables show it (percentages for PERCENT_METRICS)."""
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    if metric in PERCENT_METRICS:
        return f"{value:{sign}.{max(0, digits - 2)}%}"
    return f"{value:{sign}.{digits}f}"
