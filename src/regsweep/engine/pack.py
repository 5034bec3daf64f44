"""A pack of trials trained together: members join, train epoch by epoch, and leave.

The packed counterpart of ``train.fit``, and like it free of Optuna: the caller admits
members, runs epochs, and decides from each member's metrics (and its pruner) who
leaves. A member's initial weights and dropout masks are those of the solo run with the
same seed (``objective.train_config``); all members share the pack's batch order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch

from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits
from regsweep.engine.fit import EVAL_BATCH, EarlyStopping, EpochMetrics, FitResult, epoch_metrics
from regsweep.engine.model import SPARSITY_THRESHOLD
from regsweep.engine.packed_model import OptimizerSpec, PackedMLP
from regsweep.engine.recipe import build_model


@dataclass
class Member:
    key: Hashable  # the caller's name for it: a trial number
    reg: Regularization
    stopper: EarlyStopping
    result: FitResult = field(default_factory=FitResult)
    best_state: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class MemberEpoch:
    """One member's epoch: its metrics, and whether training should end now."""

    key: Hashable
    metrics: EpochMetrics
    diverged: bool  # training or validation loss is NaN or infinite
    done: bool  # early stopping triggered or max_epochs reached


class Pack:
    """Up to any number of members on one device, trained on the same mini-batches."""

    def __init__(self, config: SweepConfig, splits: Splits, *, shuffle_seed: int) -> None:
        self.config = config
        self.splits = splits
        train = config.train
        self.model = PackedMLP(
            splits.n_features,
            config.model.hidden,
            splits.n_classes,
            activation=config.model.activation,
            optimizer=OptimizerSpec(train.optimizer, train.lr, train.momentum),
            device=splits.device,
        )
        self.members: list[Member] = []
        self.shuffle_seed = shuffle_seed
        self.generator = torch.Generator(device=splits.device).manual_seed(shuffle_seed)
        self.epochs_run = 0  # batch orders drawn so far: where a member joining now starts

    def __len__(self) -> int:
        return len(self.members)

    @property
    def keys(self) -> list[Hashable]:
        return [m.key for m in self.members]

    def admit(
        self,
        key: Hashable,
        reg: Regularization,
        seed: int,
        model: torch.nn.Sequential | None = None,
    ) -> None:
        """Add a member initialized exactly as a solo trial with ``seed`` would be.

        ``model``, when given, is the member's initial network instead, built by the caller
        just now (``recipe.paired_model``): its dropout masks continue from the global
        generator's state after that build, as a solo run with that network's would.
        """
        if model is None:
            torch.manual_seed(seed)
            model = build_model(self.config, self.splits, reg)
        solo = model
        device = self.splits.device
        generator = torch.Generator(device=device)
        if device.type == "cpu":
            # The solo run draws its masks from the global generator, right after building
            # the network: continue from that very state.
            generator.set_state(torch.get_rng_state())
        else:
            generator.manual_seed(seed)
        self.model.add(solo, reg, generator)
        self.members.append(
            Member(key, reg, EarlyStopping(reg.patience, self.config.train.min_delta))
        )

    def run_epoch(self) -> list[MemberEpoch]:
        """Train every member for one epoch on the pack's next permutation, then evaluate."""
        started = time.perf_counter()
        x, y = self.splits.train_x, self.splits.train_y
        order = torch.randperm(len(x), generator=self.generator, device=self.generator.device)
        self.epochs_run += 1
        if order.device != x.device:
            order = order.to(x.device)
        train_losses = self.model.train_epoch(x, y, order, self.config.train.batch_size)
        val_losses, val_accs = self.model.evaluate(self.splits.val_x, self.splits.val_y, EVAL_BATCH)
        # One transfer for the whole pack: a GPU synchronizes once per epoch, not per member.
        rows = torch.stack([train_losses, val_losses, val_accs]).tolist()
        # A member's epoch time is its share of the pack's: what the epoch cost per trial.
        seconds = (time.perf_counter() - started) / max(1, len(self.members))
        out = []
        for position, member in enumerate(self.members):
            train_loss, val_loss, val_acc = (row[position] for row in rows)
            epoch = member.result.epochs_run + 1
            metrics = epoch_metrics(self.splits, epoch, train_loss, val_loss, val_acc, seconds)
            member.result.history.append(metrics)
            diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
            if not diverged and member.stopper.step(epoch, val_loss):
                member.best_state = self.model.member_state(position)
                member.result.record_best(metrics)
            stop = member.stopper.should_stop
            done = stop or epoch >= self.config.train.max_epochs
            member.result.stopped_early = stop and epoch < self.config.train.max_epochs
            out.append(MemberEpoch(member.key, metrics, diverged, done))
        return out

    def member_model(self, key: Hashable, state: dict[str, torch.Tensor]) -> torch.nn.Sequential:
        """A solo network holding ``state`` (from ``member_state``) of member ``key``.

        The inverse of ``admit``: what the member's weights are as an ``nn.Sequential``, to
        evaluate on other data or export.
        """
        member = next(m for m in self.members if m.key == key)
        model = build_model(self.config, self.splits, member.reg)
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            for layer, linear in enumerate(linears):
                linear.weight.copy_(state[f"w{layer}"].T)
                shift = state[f"b{layer}"].reshape(-1)
                if norms and layer < len(norms):
                    norm = norms[layer]
                    assert norm.running_mean is not None and norm.running_var is not None
                    norm.bias.copy_(shift)
                    norm.weight.copy_(state[f"g{layer}"].reshape(-1))
                    norm.running_mean.copy_(state[f"rm{layer}"].reshape(-1))
                    norm.running_var.copy_(state[f"rv{layer}"].reshape(-1))
                else:
                    assert linear.bias is not None
                    linear.bias.copy_(shift)
        return model.to(self.splits.device).eval()

    def release(
        self, keys: set[Hashable], *, pruned: set[Hashable] | None = None
    ) -> list[tuple[Hashable, FitResult]]:
        """Remove members ``keys`` from the pack (compacting it) and return their results.

        A member's result describes its best weights, as ``fit`` restores them.
        """
        pruned = pruned or set()
        leaving = [m for m in self.members if m.key in keys]
        for member in leaving:
            member.result.pruned = member.key in pruned
            if member.key in pruned:
                member.result.stopped_early = False
            state = member.best_state or self.model.member_state(self.members.index(member))
            member.result.weight_sparsity = _sparsity(self.model.weight_matrices(state))
        stay = [i for i, m in enumerate(self.members) if m.key not in keys]
        self.model.keep(stay)
        self.members = [self.members[i] for i in stay]
        return [(m.key, m.result) for m in leaving]


def _sparsity(weights: list[torch.Tensor]) -> float:
    small = sum(int((w.abs() < SPARSITY_THRESHOLD).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    return small / total if total else 0.0
