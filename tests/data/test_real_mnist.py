"""A short sweep on real data: the MNIST test set split 8,000 / 2,000 reaches >= 95%."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from optuna.trial import TrialState
from rich.console import Console

from regsweep.config.loading import resolve_config
from regsweep.data.splits import load_splits
from regsweep.sweep.launch import launch
from tests.conftest import IdxData


@pytest.mark.slow
def test_short_sweep_on_real_mnist_reaches_95_percent(mnist_t10k: IdxData, tmp_path: Path) -> None:
    config = resolve_config(
        {
            "study": {
                "name": "mnist-t10k",
                "storage": f"sqlite:///{tmp_path / 'study.db'}",
                "n_trials": 3,
                "seed": 0,
                "sampler": "random",
                "pruner": "none",
            },
            "data": {
                "dataset": "idx",
                "train_images": str(mnist_t10k.train_images),
                "train_labels": str(mnist_t10k.train_labels),
                "val_fraction": 0.2,
            },
            "model": {"hidden": [128, 64]},
            "train": {"max_epochs": 6, "batch_size": 128, "lr": 0.003, "device": "cpu"},
            "search_space": {
                "dropout": {"low": 0.0, "high": 0.2},
                "weight_decay": {"low": 1.0e-6, "high": 1.0e-4, "log": True},
                "l1": {"low": 1.0e-8, "high": 1.0e-6, "log": True},
                "batch_norm": True,
                "patience": 3,
            },
        },
        source="test",
        env={},
    )
    study, outcome = launch(config, console=Console(file=io.StringIO()))

    assert outcome.count(TrialState.COMPLETE) == 3
    best = study.best_trial
    assert best.user_attrs["best_val_accuracy"] >= 0.95, best.user_attrs["val_accuracy"]
    splits = load_splits(config.data, config.study.seed)  # cached: the very tensors trained on
    assert (len(splits.train_x), len(splits.val_x)) == (8000, 2000)
