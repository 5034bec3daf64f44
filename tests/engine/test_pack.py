"""A pack member trains exactly as its solo twin: same seed, params and batch order.

The solo twin is ``objective.train_config``'s recipe (seed the global generator, build the
network, ``fit``), with ``fit``'s shuffle seed set to the pack's, so that both see the same
mini-batches. Dropout is on: the member draws its masks from its own generator, started
from the state the solo run's global generator has after building the network, so the
masks are equal too; they are not fixed or switched off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits, load_splits
from regsweep.engine.fit import fit
from regsweep.engine.pack import Pack
from regsweep.engine.recipe import build_model
from tests.conftest import make_idx_dataset

SHUFFLE_SEED = 1234
EPOCHS = 3
# Float32 rounding differs between batched and solo kernels; losses agree far tighter
# than any difference a wrong update, mask or decay would make (those are > 1e-3).
TOLERANCE = dict(rtol=2e-4, atol=2e-5)

MEMBERS = [
    # dropout, weight decay, L1 and batch norm all on
    (11, Regularization(dropout=0.3, weight_decay=1e-2, l1=1e-4, batch_norm=True)),
    # the same without batch norm, in the same pack
    (12, Regularization(dropout=0.2, weight_decay=5e-3, l1=2e-4, batch_norm=False)),
    # everything off
    (13, Regularization()),
    # batch norm alone
    (14, Regularization(batch_norm=True, weight_decay=1e-3)),
]


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    data = make_idx_dataset(tmp_path_factory.mktemp("pack"), n_train=300, side=6)
    config = SweepConfig.model_validate(
        {
            "data": {
                "dataset": "idx",
                "train_images": str(data.train_images),
                "train_labels": str(data.train_labels),
                "val_fraction": 0.25,
            }
        }
    )
    return load_splits(config.data, seed=0)


def sweep(optimizer: str, max_epochs: int = EPOCHS) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "model": {"hidden": [24, 12]},
            "train": {
                "max_epochs": max_epochs,
                "batch_size": 32,
                "optimizer": optimizer,
                "lr": 0.01,
                "device": "cpu",
            },
        }
    )


def solo_val_losses(
    config: SweepConfig, splits: Splits, seed: int, reg: Regularization
) -> list[float]:
    torch.manual_seed(seed)
    model = build_model(config, splits, reg)
    result = fit(model, splits, config.train, reg, seed=SHUFFLE_SEED)
    return [m.val_loss for m in result.history]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_member_matches_solo(splits: Splits, optimizer: str) -> None:
    config = sweep(optimizer)
    pack = Pack(config, splits, shuffle_seed=SHUFFLE_SEED)
    for seed, reg in MEMBERS:
        pack.admit(seed, reg, seed)
    packed: dict[object, list[float]] = {seed: [] for seed, _ in MEMBERS}
    for _ in range(EPOCHS):
        for row in pack.run_epoch():
            packed[row.key].append(row.metrics.val_loss)
    for seed, reg in MEMBERS:
        solo = solo_val_losses(config, splits, seed, reg)
        assert torch.allclose(torch.tensor(packed[seed]), torch.tensor(solo), **TOLERANCE), (
            f"member {seed} ({reg}): packed {packed[seed]} vs solo {solo}"
        )
    # The members differ from each other, so equality above is not a coincidence.
    assert len({round(v[-1], 6) for v in packed.values()}) == len(MEMBERS)


def test_compaction_keeps_the_others_exact(splits: Splits) -> None:
    """Releasing members mid-run removes them; those that stay still match their solo twin."""
    config = sweep("adam")
    pack = Pack(config, splits, shuffle_seed=SHUFFLE_SEED)
    for seed, reg in MEMBERS:
        pack.admit(seed, reg, seed)
    history: dict[object, list[float]] = {seed: [] for seed, _ in MEMBERS}
    for epoch in range(EPOCHS):
        for row in pack.run_epoch():
            history[row.key].append(row.metrics.val_loss)
        if epoch == 0:
            released = pack.release({11, 13}, pruned={13})
            assert {key for key, _ in released} == {11, 13}
            assert dict(released)[13].pruned and not dict(released)[11].pruned
            assert pack.keys == [12, 14] and pack.model.size == 2
            assert pack.model.params["w0"].shape[1] == 2  # the first layer is compacted too
    for seed, reg in MEMBERS[1::2]:
        solo = solo_val_losses(config, splits, seed, reg)
        assert torch.allclose(torch.tensor(history[seed]), torch.tensor(solo), **TOLERANCE)


def test_early_stopping_restores_the_best_epoch(splits: Splits) -> None:
    """A member whose loss stops improving is done, and reports its best epoch's metrics."""
    config = sweep("adam", max_epochs=30)
    config.train.lr = 0.5  # far too large: the loss soon stops improving
    pack = Pack(config, splits, shuffle_seed=SHUFFLE_SEED)
    pack.admit("x", Regularization(patience=1), 3)
    while True:
        (row,) = pack.run_epoch()
        if row.done:
            break
    ((_, result),) = pack.release({"x"})
    assert result.stopped_early and result.epochs_run < 30
    assert result.best_epoch == result.epochs_run - 1
    assert result.best_val_loss == min(m.val_loss for m in result.history)
    assert len(pack) == 0


def test_new_member_after_compaction_trains(splits: Splits, tmp_path: Path) -> None:
    """A freed slot takes a new member, which starts from its own fresh initialization."""
    config = sweep("adam")
    pack = Pack(config, splits, shuffle_seed=SHUFFLE_SEED)
    pack.admit(1, Regularization(batch_norm=True), 1)
    pack.run_epoch()
    pack.release({1})
    pack.admit(2, Regularization(dropout=0.1), 2)
    first = pack.run_epoch()
    assert [r.metrics.epoch for r in first] == [1]
    second = pack.run_epoch()
    assert second[0].metrics.val_loss < first[0].metrics.val_loss


def test_a_diverging_member_leaves_the_others_untouched(splits: Splits) -> None:
    """A member whose weights blow up to NaN is reported as diverged; its NaNs stay its own."""
    config = sweep("sgd")
    exploding = Regularization(weight_decay=1e5)  # SGD: w <- w * (1 - lr * 1e5) = -999 w
    pack = Pack(config, splits, shuffle_seed=SHUFFLE_SEED)
    pack.admit(1, exploding, 1)
    seed, reg = MEMBERS[0]
    pack.admit(seed, reg, seed)
    history: list[float] = []
    diverged_at = None
    for epoch in range(1, EPOCHS + 1):
        for row in pack.run_epoch():
            if row.key == 1 and row.diverged and diverged_at is None:
                diverged_at = epoch
            if row.key == seed:
                history.append(row.metrics.val_loss)
        if diverged_at == epoch:
            ((_, result),) = pack.release({1})
            assert result.epochs_run == epoch
    assert diverged_at == 1
    solo = solo_val_losses(config, splits, seed, reg)
    assert torch.allclose(torch.tensor(history), torch.tensor(solo), **TOLERANCE)


@pytest.fixture(scope="module")
def regression_splits(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    import numpy as np

    folder = tmp_path_factory.mktemp("pack-regression")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10))
    np.savez(folder / "r.npz", x=x, y=x @ rng.normal(size=10) + rng.normal(size=300))
    config = SweepConfig.model_validate(
        {"data": {"dataset": "arrays", "path": str(folder / "r.npz"), "val_fraction": 0.25}}
    )
    return load_splits(config.data, seed=0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_regression_member_matches_solo(regression_splits: Splits, optimizer: str) -> None:
    splits = regression_splits
    assert splits.task == "regression" and splits.n_classes == 1
    config = sweep(optimizer)
    pack = Pack(config, splits, shuffle_seed=SHUFFLE_SEED)
    for seed, reg in MEMBERS:
        pack.admit(seed, reg, seed)
    packed: dict[object, list[float]] = {seed: [] for seed, _ in MEMBERS}
    for _ in range(EPOCHS):
        for row in pack.run_epoch():
            packed[row.key].append(row.metrics.val_loss)
            assert row.metrics.val_rmse is not None and row.metrics.val_r2 is not None
    for seed, reg in MEMBERS:
        solo = solo_val_losses(config, splits, seed, reg)
        assert torch.allclose(torch.tensor(packed[seed]), torch.tensor(solo), **TOLERANCE), (
            f"member {seed} ({reg}): packed {packed[seed]} vs solo {solo}"
        )
    assert len({round(v[-1], 6) for v in packed.values()}) == len(MEMBERS)
