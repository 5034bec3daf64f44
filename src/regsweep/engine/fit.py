"""The trial engine: train one MLP with one set of regularizers, epoch by epoch.

Nothing here knows about Optuna. A caller watches progress through ``on_epoch``,
which returns True to stop the run at once (that is how pruning plugs in).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from regsweep.config.regularization import Regularization
from regsweep.config.schema import TrainConfig
from regsweep.data.splits import Splits
from regsweep.engine.model import l1_penalty, make_optimizer, weight_matrices, weight_sparsity
from regsweep.errors import TrialDiverged

# Large enough to amortize per-call overhead, small enough for any GPU or laptop.
EVAL_BATCH = 8192


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based: the pruner's resource is the number of epochs trained
    train_loss: float  # mean mini-batch cross-entropy while training (as Keras reports `loss`)
    val_loss: float  # cross-entropy, or MSE on the standardized target for regression
    val_accuracy: float  # NaN for regression, which has val_rmse and val_r2 instead
    seconds: float
    val_rmse: float | None = None  # regression only, in the target's units
    val_r2: float | None = None


def epoch_metrics(
    splits: Splits, epoch: int, train_loss: float, val_loss: float, val_acc: float, seconds: float
) -> EpochMetrics:
    """One epoch's metrics, with the regression scores where the task has them."""
    if splits.task != "regression":
        return EpochMetrics(epoch, train_loss, val_loss, val_acc, seconds)
    scores = splits.scores("val", val_loss, val_acc)
    return EpochMetrics(
        epoch, train_loss, val_loss, math.nan, seconds, scores["val_rmse"], scores["val_r2"]
    )


def batch_loss(output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for class indices; MSE for float targets (one output per sample)."""
    if target.is_floating_point():
        return F.mse_loss(output.squeeze(-1), target, reduction=reduction)
    return F.cross_entropy(output, target, reduction=reduction)


EpochCallback = Callable[[EpochMetrics], bool]


@dataclass
class FitResult:
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_val_accuracy: float = 0.0
    best_val_rmse: float | None = None  # regression only
    best_val_r2: float | None = None
    stopped_early: bool = False
    pruned: bool = False
    weight_sparsity: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def epoch_seconds(self) -> float:
        return sum(m.seconds for m in self.history) / max(1, len(self.history))

    def user_attrs(self) -> dict[str, Any]:
        """What a trial stores about itself, for `trials`, `report` and the dashboard."""
        scores: dict[str, Any]
        if self.history and self.history[0].val_rmse is not None:
            scores = {
                "val_rmse": [m.val_rmse for m in self.history],
                "val_r2": [m.val_r2 for m in self.history],
                "best_val_rmse": self.best_val_rmse,
                "best_val_r2": self.best_val_r2,
            }
        else:
            scores = {
                "val_accuracy": [m.val_accuracy for m in self.history],
                "best_val_accuracy": self.best_val_accuracy,
            }
        return {
            "train_loss": [m.train_loss for m in self.history],
            "val_loss": [m.val_loss for m in self.history],
            "best_epoch": self.best_epoch,
            **scores,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "epoch_seconds": self.epoch_seconds,
            "weight_sparsity": self.weight_sparsity,
        }

    def record_best(self, metrics: EpochMetrics) -> None:
        """Make ``metrics``' epoch the best one (early stopping restores its weights)."""
        self.best_epoch, self.best_val_loss = metrics.epoch, metrics.val_loss
        self.best_val_accuracy = metrics.val_accuracy
        self.best_val_rmse, self.best_val_r2 = metrics.val_rmse, metrics.val_r2


class EarlyStopping:
    """Stop when validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, but got {patience=}.")
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.stale_epochs = 0

    def step(self, epoch: int, loss: float) -> bool:
        """Record one epoch's loss; return True if it is the new best."""
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.stale_epochs = loss, epoch, 0
            return True
        self.stale_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale_epochs >= self.patience


def _scored_rows(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row's loss and, for classification, whether it was classified right (1 or 0;
    None for regression), in eval mode and large batches."""
    was_training = model.training
    model.eval()
    losses, correct = [], []
    regression = y.is_floating_point()
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        target = y[start : start + EVAL_BATCH]
        losses.append(batch_loss(logits, target, reduction="none"))
        if not regression:
            correct.append((logits.argmax(dim=1) == target).float())
    model.train(was_training)
    empty = torch.zeros(0, device=x.device)
    loss = torch.cat(losses) if losses else empty
    return loss, None if regression else (torch.cat(correct) if correct else empty)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean loss and accuracy over ``x``, in large batches, in eval mode.

    For regression (float targets) the loss is the MSE on the standardized target and the
    accuracy NaN: ``Splits.scores`` turns the MSE into RMSE and R².
    """
    loss, correct = _scored_rows(model, x, y)
    n = max(1, len(x))
    return float(loss.sum()) / n, math.nan if correct is None else float(correct.sum()) / n


@torch.inference_mode()
def row_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Each row's loss and, for classification, whether it was classified right (1 or 0),
    as float32 arrays: what a per-row comparison of two models on the same rows needs
    (``ablate``'s check on the test rows). Their means are :func:`evaluate`'s figures."""
    loss, correct = _scored_rows(model, x, y)
    out = {"loss": loss.float().cpu().numpy()}
    if correct is not None:
        out["correct"] = correct.cpu().numpy()
    return out


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    l1: float,
    generator: torch.Generator,
) -> float:
    """One pass over a fresh permutation of (x, y); returns the mean mini-batch loss."""
    model.train()
    n = len(x)
    order = torch.randperm(n, generator=generator, device=generator.device)
    if order.device != x.device:
        order = order.to(x.device)
    weights = weight_matrices(model) if l1 > 0 else []
    # Summed on the device: a .item() per step would synchronize a GPU every batch.
    loss_sum = torch.zeros((), device=x.device)
    seen = 0
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2:
            continue  # BatchNorm cannot normalize a batch of one; one sample changes nothing
        loss = batch_loss(model(x[index]), y[index])
        objective = loss + l1 * l1_penalty(weights) if l1 > 0 else loss
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        seen += len(index)
    return float(loss_sum) / max(1, seen)


def fit(
    model: nn.Module,
    splits: Splits,
    train: TrainConfig,
    reg: Regularization,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
    restore_best: bool = True,
    skip_epochs: int = 0,
) -> FitResult:
    """Train ``model`` for up to ``train.max_epochs`` and restore its best weights.

    With ``restore_best`` False the model keeps its last epoch's weights: what training
    without early stopping gives, which an ablation of early stopping must measure.
    ``seed`` orders the mini-batches; ``skip_epochs`` first draws and discards that many
    epochs' orders, to replay a packed trial that joined its pack late.

    Raises:
        TrialDiverged: the training or validation loss became NaN or infinite.
    """
    device = splits.device
    model.to(device)
    optimizer = make_optimizer(model, train.optimizer, train.lr, reg.weight_decay, train.momentum)
    generator = torch.Generator(device=device).manual_seed(seed)
    for _ in range(skip_epochs):  # the draw train_epoch makes, once per epoch
        torch.randperm(len(splits.train_x), generator=generator, device=generator.device)
    stopper = EarlyStopping(reg.patience, train.min_delta)
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None

    for epoch in range(1, train.max_epochs + 1):
        started = time.perf_counter()
        train_loss = train_epoch(
            model,
            optimizer,
            splits.train_x,
            splits.train_y,
            batch_size=train.batch_size,
            l1=reg.l1,
            generator=generator,
        )
        val_loss, val_accuracy = evaluate(model, splits.val_x, splits.val_y)
        metrics = epoch_metrics(
            splits, epoch, train_loss, val_loss, val_accuracy, time.perf_counter() - started
        )
        result.history.append(metrics)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrialDiverged(
                f"loss became {'NaN' if math.isnan(val_loss) or math.isnan(train_loss) else 'inf'}"
                f" at epoch {epoch} (train {train_loss}, validation {val_loss})",
                result.user_attrs(),
            )
        if stopper.step(epoch, val_loss):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            result.record_best(metrics)
        if on_epoch is not None and on_epoch(metrics):
            result.pruned = True
            break
        if stopper.should_stop:
            result.stopped_early = epoch < train.max_epochs
            break

    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    result.weight_sparsity = weight_sparsity(model)
    return result
