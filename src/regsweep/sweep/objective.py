"""The Optuna objective: adapts one trial to the trial engine through a small callback."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits
from regsweep.engine.fit import EpochMetrics
from regsweep.engine.recipe import BatchOrder, train_config, trial_seed
from regsweep.errors import TrialDiverged
from regsweep.signals import raise_pending_interrupt
from regsweep.sweep.space import suggest_regularization

# Called after every epoch of every trial, for progress displays.
EpochListener = Callable[[int, EpochMetrics], None]


BATCH_ORDER_ATTR = "batch_order"


class Objective:
    """``objective(trial) -> best validation loss``, recording the trial's story as user attrs."""

    def __init__(
        self, config: SweepConfig, splits: Splits, listener: EpochListener | None = None
    ) -> None:
        self.config = config
        self.splits = splits
        self.listener = listener

    def __call__(self, trial: optuna.Trial) -> float:
        reg = suggest_regularization(trial, self.config.search_space)
        seed = trial_seed(self.config.study.seed, trial.number)

        def on_epoch(metrics: EpochMetrics) -> bool:
            raise_pending_interrupt()
            trial.report(metrics.val_loss, metrics.epoch)
            if self.listener is not None:
                self.listener(trial.number, metrics)
            return trial.should_prune()

        trial.set_user_attr("seed", seed)
        trial.set_user_attr(BATCH_ORDER_ATTR, BatchOrder(seed).as_attr())
        try:
            _, result = train_config(self.config, self.splits, reg, seed, on_epoch)
        except TrialDiverged as exc:
            _record(trial, {**exc.partial_attrs, "fail_reason": str(exc)})
            raise
        _record(trial, result.user_attrs())
        if result.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {result.epochs_run}")
        return result.best_val_loss


def _record(trial: optuna.Trial, attrs: dict[str, object]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
