"""One model trained from one config: the recipe shared by trials, packs, ablation and export.

Nothing here knows about Optuna: a seed, a config and a set of regularizers in, a trained
network and its story out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits
from regsweep.engine.fit import EpochMetrics, FitResult, fit
from regsweep.engine.model import build_mlp


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


def paired_model(
    config: SweepConfig, splits: Splits, reg: Regularization, seed: int
) -> torch.nn.Sequential:
    """The network ``reg`` trains from, initialized alike for every ``reg`` of one seed.

    Paired comparisons (ablation, dose-response paths) need every variant of a seed to
    start from the same weights. Dropout, weight decay, L1 and patience leave the layers
    as they are, but batch norm drops the Linear biases, which shifts the random draws of
    every later layer. So the Linear weights (and biases, where kept) are always drawn as
    for the network without batch norm and copied into the batch-norm network (whose
    BatchNorm starts at gamma 1, beta 0). Afterwards the global generator, which draws the
    dropout masks, stands where it stands after building the plain network, for every
    variant.
    """
    torch.manual_seed(seed)
    plain = build_model(config, splits, dataclasses.replace(reg, batch_norm=False))
    if not reg.batch_norm:
        return plain
    after_plain = torch.get_rng_state()
    model = build_model(config, splits, reg)
    with torch.no_grad():
        pairs = zip(_linears(model), _linears(plain), strict=True)
        for mine, theirs in pairs:
            mine.weight.copy_(theirs.weight)
            if mine.bias is not None and theirs.bias is not None:
                mine.bias.copy_(theirs.bias)
    torch.set_rng_state(after_plain)
    return model


def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


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
