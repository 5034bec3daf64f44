"""The trial engine without Optuna: early stopping, best-weight restore, divergence, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from regsweep.config.schema import TrainConfig
from regsweep.data.splits import Splits
from regsweep.engine.fit import EarlyStopping, EpochMetrics, Regularization, evaluate, fit
from regsweep.engine.model import build_mlp, weight_matrices
from regsweep.errors import TrialDiverged


def noise_splits(n: int = 64, features: int = 16, classes: int = 4, seed: int = 0) -> Splits:
    """Random inputs with random labels: a model can only memorize them, so validation
    loss is best after an epoch or two and then rises, which is what early stopping is for."""
    g = torch.Generator().manual_seed(seed)

    def part() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)

    (tx, ty), (vx, vy) = part(), part()
    return Splits(tx, ty, vx, vy, None, None, classes, "noise")


def learnable_splits(n: int = 200, seed: int = 0) -> Splits:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, 8, generator=g) * 3

    def part() -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 3, (n,), generator=g)
        return centers[y] + torch.randn(n, 8, generator=g), y

    (tx, ty), (vx, vy) = part(), part()
    return Splits(tx, ty, vx, vy, None, None, 3, "blobs")


@pytest.mark.parametrize(
    ("losses", "patience", "min_delta", "stops_after", "best_epoch"),
    [
        # Improves, then two epochs without improvement: stops after epoch 4 with patience 2.
        ([1.0, 0.9, 0.95, 0.91, 0.5], 2, 0.0, 4, 2),
        # A new best resets the count.
        ([1.0, 1.1, 0.8, 0.9, 0.85, 0.86], 2, 0.0, 5, 3),
        # Improvements smaller than min_delta do not count.
        ([1.0, 0.97, 0.95, 0.5], 2, 0.05, 3, 1),
        ([1.0, 0.94, 0.93, 0.92, 0.91], 3, 0.05, 5, 2),
        # Never stops within the sequence.
        ([1.0, 0.9, 0.8, 0.7], 1, 0.0, None, 4),
    ],
)
def test_early_stopping_on_a_scripted_sequence(
    losses: list[float], patience: int, min_delta: float, stops_after: int | None, best_epoch: int
) -> None:
    stopper = EarlyStopping(patience, min_delta)
    stopped = None
    for epoch, loss in enumerate(losses, start=1):
        stopper.step(epoch, loss)
        if stopper.should_stop:
            stopped = epoch
            break
    assert stopped == stops_after
    assert stopper.best_epoch == best_epoch
    assert stopper.best == losses[best_epoch - 1]


def test_early_stopping_refuses_patience_below_one() -> None:
    with pytest.raises(ValueError, match="patience=0"):
        EarlyStopping(0)


def test_fit_stops_early_and_restores_the_best_weights() -> None:
    splits = noise_splits()
    torch.manual_seed(0)
    model = build_mlp(16, [64], 4)
    snapshots: dict[int, list[torch.Tensor]] = {}

    def snapshot(metrics: EpochMetrics) -> bool:
        snapshots[metrics.epoch] = [w.detach().clone() for w in weight_matrices(model)]
        return False

    train = TrainConfig(max_epochs=20, batch_size=16, lr=0.01)
    result = fit(model, splits, train, Regularization(patience=3), seed=0, on_epoch=snapshot)

    val_losses = [m.val_loss for m in result.history]
    assert result.stopped_early and result.epochs_run < 20
    assert result.best_epoch < result.epochs_run  # later epochs were worse: restoring matters
    assert result.epochs_run - result.best_epoch == 3  # exactly `patience` epochs without gain
    assert result.best_val_loss == min(val_losses) == val_losses[result.best_epoch - 1]
    for restored, best in zip(weight_matrices(model), snapshots[result.best_epoch], strict=True):
        assert torch.equal(restored, best)
    assert evaluate(model, splits.val_x, splits.val_y)[0] == pytest.approx(result.best_val_loss)
    attrs = result.user_attrs()
    assert attrs["val_loss"] == val_losses and len(attrs["train_loss"]) == result.epochs_run
    assert attrs["stopped_early"] is True and attrs["best_epoch"] == result.best_epoch
    assert attrs["epoch_seconds"] > 0 and 0.0 <= attrs["weight_sparsity"] <= 1.0


def test_fit_without_restoring_keeps_the_last_epochs_weights() -> None:
    """What an ablation of early stopping measures: the model training left behind."""
    splits = noise_splits()
    torch.manual_seed(0)
    model = build_mlp(16, [64], 4)
    train = TrainConfig(max_epochs=12, batch_size=16, lr=0.01)
    reg = Regularization(patience=12)  # early stopping off
    result = fit(model, splits, train, reg, seed=0, restore_best=False)
    assert result.epochs_run == 12 and not result.stopped_early
    assert result.best_epoch < 12  # noise labels: validation loss rises after its best
    last = result.history[-1].val_loss
    assert last > result.best_val_loss
    assert evaluate(model, splits.val_x, splits.val_y)[0] == pytest.approx(last)


def test_fit_learns_and_a_stop_request_ends_the_run() -> None:
    splits = learnable_splits()
    model = build_mlp(8, [16], 3)
    result = fit(
        model,
        splits,
        TrainConfig(max_epochs=10, batch_size=32, lr=0.01),
        Regularization(),
        seed=0,
        on_epoch=lambda m: m.epoch == 3,  # what a pruner does through the callback
    )
    assert result.pruned and result.epochs_run == 3 and not result.stopped_early
    assert result.best_val_accuracy > 0.8


def test_nan_loss_raises_trial_diverged_with_the_partial_history() -> None:
    splits = learnable_splits()
    model = build_mlp(8, [16], 3)

    def poison(metrics: EpochMetrics) -> bool:
        if metrics.epoch == 2:
            with torch.no_grad():
                weight_matrices(model)[0][0, 0] = math.nan
        return False

    train = TrainConfig(max_epochs=6, batch_size=32)
    with pytest.raises(TrialDiverged, match="NaN at epoch 3") as info:
        fit(model, splits, train, Regularization(), seed=0, on_epoch=poison)
    attrs = info.value.partial_attrs
    assert attrs["epochs_run"] == 3 and len(attrs["val_loss"]) == 3
    assert all(math.isfinite(v) for v in attrs["val_loss"][:2])
    assert math.isnan(attrs["val_loss"][2])


def test_huge_l1_with_sgd_diverges_rather_than_crashing() -> None:
    splits = learnable_splits()
    model = build_mlp(8, [16], 3)
    train = TrainConfig(max_epochs=3, batch_size=32, optimizer="sgd", lr=0.1)
    with pytest.raises(TrialDiverged, match="at epoch 1"):
        fit(model, splits, train, Regularization(l1=1e30), seed=0)


def test_l1_makes_weights_sparse() -> None:
    splits = learnable_splits()
    train = TrainConfig(max_epochs=8, batch_size=32, lr=0.01)
    sparsity = {}
    for l1 in (0.0, 1e-2):
        torch.manual_seed(0)
        result = fit(build_mlp(8, [16], 3), splits, train, Regularization(l1=l1), seed=0)
        sparsity[l1] = result.weight_sparsity
    assert sparsity[0.0] < 0.01 < 0.05 < sparsity[1e-2]


def test_same_seed_gives_the_same_history() -> None:
    splits = learnable_splits()
    train = TrainConfig(max_epochs=3, batch_size=32)
    reg = Regularization(dropout=0.3, weight_decay=1e-3, l1=1e-4, batch_norm=True)

    def run(seed: int) -> list[tuple[float, float, float]]:
        torch.manual_seed(seed)
        result = fit(
            build_mlp(8, [16], 3, dropout=0.3, batch_norm=True), splits, train, reg, seed=seed
        )
        return [(m.train_loss, m.val_loss, m.val_accuracy) for m in result.history]

    assert run(7) == run(7)
    assert run(7) != run(8)


def regression_splits(n: int = 240, seed: int = 0, scale: float = 50.0) -> Splits:
    """y = a linear function of x plus noise, standardized as load_splits does (scale 50)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = x @ torch.randn(6, generator=g) + 0.3 * torch.randn(n, generator=g)
    y = (y - y[: n // 2].mean()) / y[: n // 2].std(unbiased=False)
    half, three = n // 2, 3 * n // 4
    return Splits(
        x[:half], y[:half], x[half:three], y[half:three], x[three:], y[three:],
        n_classes=1, name="linear", task="regression", target_mean=100.0, target_scale=scale,
    )  # fmt: skip


def test_regression_fits_with_mse_and_reports_rmse_and_r2() -> None:
    from sklearn.metrics import mean_squared_error, r2_score

    splits = regression_splits()
    torch.manual_seed(0)
    model = build_mlp(6, [32], 1)
    result = fit(model, splits, TrainConfig(max_epochs=30, batch_size=16, lr=0.01),
                 Regularization(), seed=0)  # fmt: skip
    last = result.history[-1]
    assert math.isnan(last.val_accuracy) and last.val_rmse is not None and last.val_r2 is not None
    assert result.best_val_r2 is not None and result.best_val_r2 > 0.8  # it learned the line
    # The scores are scikit-learn's, in the target's own units (scale 50, mean 100).
    with torch.no_grad():
        predicted = model.eval()(splits.val_x).squeeze(-1).double() * 50 + 100
    truth = splits.val_y.double() * 50 + 100
    rmse = mean_squared_error(truth, predicted) ** 0.5
    scores = splits.scores("val", *evaluate(model, splits.val_x, splits.val_y))
    assert scores["val_rmse"] == pytest.approx(rmse, rel=1e-4)
    assert scores["val_r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-4)
    assert scores["val_loss"] == pytest.approx(result.best_val_loss, rel=1e-5)
    attrs = result.user_attrs()
    assert "val_accuracy" not in attrs and "best_val_accuracy" not in attrs
    assert attrs["best_val_r2"] == result.best_val_r2 and len(attrs["val_rmse"]) == 30
