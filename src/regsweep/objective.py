"""The Optuna objective: adapts one trial to the trial engine through a small callback."""

from __future__ import annotations

from collections.abc import Callable

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


def train_config(
    config: SweepConfig,
    splits: Splits,
    reg: Regularization,
    seed: int,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    restore_best: bool = True,
) -> tuple[torch.nn.Module, FitResult]:
    """Build and train one model with ``reg``; used by trials, ablation and export alike."""
    torch.manual_seed(seed)
    model = build_model(config, splits, reg)
    result = fit(
        model, splits, config.train, reg, seed=seed, on_epoch=on_epoch, restore_best=restore_best
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
