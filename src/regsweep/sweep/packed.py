"""The packed loop (``study.pack > 1``): up to K trials trained together as one pack.

The same lifecycle as the solo loop (``lifecycle.py``) takes, beats for, tells and
cleans up every member; this module only fills the pack's free slots, trains it an epoch
at a time, and reports, prunes and finishes each member on its own.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits
from regsweep.engine.pack import MemberEpoch, Pack
from regsweep.engine.recipe import BatchOrder, trial_seed
from regsweep.sweep.lifecycle import FAIL_REASON_ATTR, Lifecycle, RunListener, RunOutcome
from regsweep.sweep.objective import BATCH_ORDER_ATTR, EpochListener
from regsweep.sweep.space import suggest_regularization


def run_packed(
    study: optuna.Study,
    config: SweepConfig,
    splits: Splits,
    *,
    n_trials: int,
    storage: optuna.storages.BaseStorage | None = None,
    timeout: float | None = None,
    listener: RunListener | None = None,
    epoch_listener: EpochListener | None = None,
) -> RunOutcome:
    """Run packs of up to ``config.study.pack`` trials until the budget or ``timeout``.

    Free slots are filled before every epoch, so a packed worker keeps taking the retries
    of trials whose worker died, exactly as a solo worker does.
    """
    pack: Pack | None = None
    with Lifecycle(study, storage, n_trials=n_trials, timeout=timeout, listener=listener) as life:
        while True:
            with life.guard():
                pack = _fill(life, pack, config, splits)
                if pack is None or not life.running:
                    pack = None  # the next member starts a new pack, with its own order
                    if not life.should_wait():
                        life.done()
                        break
                    life.wait()
                    continue
                _epoch(life, pack, epoch_listener)
    return life.outcome


def _fill(life: Lifecycle, pack: Pack | None, config: SweepConfig, splits: Splits) -> Pack | None:
    """Take trials into the pack's free slots, as many as the budget gives now."""
    while len(life.running) < config.study.pack:
        trial = life.take()
        if trial is None:
            break
        reg = suggest_regularization(trial, config.search_space)
        seed = trial_seed(config.study.seed, trial.number)
        trial.set_user_attr("seed", seed)
        if pack is None:
            # The pack's batch order follows its first member's seed.
            pack = Pack(config, splits, shuffle_seed=seed)
        pack.admit(trial.number, reg, seed)
        order = BatchOrder(pack.shuffle_seed, pack.epochs_run)
        trial.set_user_attr(BATCH_ORDER_ATTR, order.as_attr())
    return pack


def _epoch(life: Lifecycle, pack: Pack, epoch_listener: EpochListener | None) -> None:
    """Train the pack one epoch; report, prune and finish members."""
    gone = [key for key in pack.keys if key not in life.running]
    if gone:  # dropped: another worker failed them as stale
        pack.release(set(gone), pruned=set())
    rows = pack.run_epoch()
    leaving: set[Hashable] = set()
    pruned: set[Hashable] = set()
    dropped: set[Hashable] = set()
    diverged: dict[Hashable, MemberEpoch] = {}
    for row in rows:
        trial = life.running[int(row.key)]  # type: ignore[call-overload]
        if row.diverged:
            diverged[row.key] = row
            leaving.add(row.key)
            continue
        try:
            trial.report(row.metrics.val_loss, row.metrics.epoch)
            prune = trial.should_prune()
        except UpdateFinishedTrialError:
            life.drop(trial)
            dropped.add(row.key)
            leaving.add(row.key)
            continue
        if epoch_listener is not None:
            epoch_listener(trial.number, row.metrics)
        if prune:
            pruned.add(row.key)
            leaving.add(row.key)
        elif row.done:
            leaving.add(row.key)
    for key, result in pack.release(leaving, pruned=pruned):
        if key in dropped:
            continue
        trial = life.running[int(key)]  # type: ignore[call-overload]
        attrs: dict[str, object] = dict(result.user_attrs())
        if key in diverged:
            m = diverged[key].metrics
            kind = "NaN" if math.isnan(m.val_loss) or math.isnan(m.train_loss) else "inf"
            attrs[FAIL_REASON_ATTR] = (
                f"loss became {kind} at epoch {m.epoch} "
                f"(train {m.train_loss}, validation {m.val_loss})"
            )
            life.tell(trial, state=TrialState.FAIL, attrs=attrs)
        elif result.pruned:
            life.tell(trial, state=TrialState.PRUNED, attrs=attrs)
        else:
            life.tell(trial, value=result.best_val_loss, attrs=attrs)
