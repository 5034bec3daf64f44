"""The Optuna objective: adapts one trial to the trial engine through a small callback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
import torch

from regsweep.config import SweepConfig
from regsweep.data import Splits
from regsweep.errors import TrialDiverged
from regsweep.model import build_mlp
from regsweep.regularization import Regularization
from regsweep.runner import raise_pending_interrupt
from regsweep.space import suggest_regularization
from regsweep.train import EpochMetrics, FitResult, fit

# Called after every epoch of every trial, for progress displays.
EpochListener = Callable[[int, EpochMetrics], None]


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A torch seed per trial, derived from the study seed: reruns give the same first trials."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


def build_model(config: SweepConfig, splits: Splits, reg: Regularization) -> torch.nn.Sequential:
    return build_mlp(
        splits.n_features,
        config.model.hidden,
        splits.n_classes,
        dropout=reg.dropout,
        batch_norm=reg.batch_norm,
        activation=config.model.activation,
    )


BATCH_ORDER_ATTR = "batch_order"


@dataclass(frozen=True)
class BatchOrder:
    """Where a trial's mini-batch order came from, so that it can be replayed.

    A solo trial shuffles with its own seed from its first epoch; a packed trial with its
    pack's seed, from the epoch at which it joined the pack.
    """

    shuffle_seed: int
    skip_epochs: int = 0

    def as_attr(self) -> dict[str, int]:
        return {"shuffle_seed": self.shuffle_seed, "skip_epochs": self.skip_epochs}

    @classmethod
    def from_attr(cls, value: object) -> BatchOrder | None:
        """The stored order, or None for a trial from before it was recorded."""
        if not isinstance(value, dict) or "shuffle_seed" not in value:
            return None
        return cls(int(value["shuffle_seed"]), int(value.get("skip_epochs", 0)))


def train_config(
    config: SweepConfig,
    splits: Splits,
    reg: Regularization,
    seed: int,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    restore_best: bool = True,
    order: BatchOrder | None = None,
) -> tuple[torch.nn.Module, FitResult]:
    """Build and train one model with ``reg``; used by trials, ablation and export alike.

    ``seed`` initializes the weights and, unless ``order`` says otherwise, orders the
    mini-batches.
    """
    torch.manual_seed(seed)
    model = build_model(config, splits, reg)
    order = order or BatchOrder(seed)
    result = fit(
        model,
        splits,
        config.train,
        reg,
        seed=order.shuffle_seed,
        on_epoch=on_epoch,
        restore_best=restore_best,
        skip_epochs=order.skip_epochs,
    )
    return model, result


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
