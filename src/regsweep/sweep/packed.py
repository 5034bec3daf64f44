"""The study loop for ``study.pack > 1``: up to K trials trained together as one pack.

Like ``runner.run_trials`` it owns every trial state change and shares its budget,
retry and interruption rules: slots are reserved under the study lock, each member
reports and is pruned on its own, a freed slot takes the next trial, heartbeats go out
for every running member, and Ctrl-C or SIGTERM fails and re-queues all of them.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits
from regsweep.engine.fit import EpochMetrics, FitResult
from regsweep.engine.pack import MemberEpoch, Pack
from regsweep.engine.recipe import BatchOrder, trial_seed
from regsweep.signals import Terminated, raise_pending_interrupt, signals_deferred
from regsweep.sweep.objective import BATCH_ORDER_ATTR
from regsweep.sweep.solo import (
    WAIT_POLL_S,
    WORKER_ATTR,
    RunListener,
    RunOutcome,
    _fail_and_requeue,
    _reserve,
    worker_name,
)
from regsweep.sweep.space import suggest_regularization

EpochListener = Callable[[int, EpochMetrics], None]


def run_packed(
    study: optuna.Study,
    config: SweepConfig,
    splits: Splits,
    *,
    n_trials: int,
    timeout: float | None = None,
    listener: RunListener | None = None,
    epoch_listener: EpochListener | None = None,
    heartbeat_storage: optuna.storages.BaseStorage | None = None,
) -> RunOutcome:
    """Run packs of up to ``config.study.pack`` trials until the budget or ``timeout``."""
    outcome = RunOutcome()
    started = time.monotonic()
    storage = heartbeat_storage
    beats = isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None
    running: dict[Hashable, optuna.Trial] = {}
    pack: Pack | None = None
    accepting = True
    with _heartbeats(storage if beats else None, study) as heart:
        try:
            while True:
                raise_pending_interrupt()
                if accepting and timeout is not None and time.monotonic() - started >= timeout:
                    accepting, outcome.reason = False, f"timeout of {timeout:g} s reached"
                if accepting and len(running) < config.study.pack and beats:
                    # Fails (and re-queues) trials whose worker died, as run_trials does.
                    optuna.storages.fail_stale_trials(study)
                others_running = 0
                while accepting and len(running) < config.study.pack:
                    trial, used = _reserve(study, n_trials, storage)
                    if trial is None:
                        if beats and not running and used.running > 0:
                            # As in run_trials: if their worker died, a survivor must run
                            # the retry, so wait for trials still running elsewhere.
                            others_running = used.running
                        else:
                            accepting, outcome.budget_reached = False, True
                            outcome.reason = f"budget of {n_trials} trials reached"
                        break
                    running[trial.number] = trial  # from here on, an interrupt fails it too
                    raise_pending_interrupt()  # one that came while the trial was asked
                    reg = suggest_regularization(trial, config.search_space)
                    seed = trial_seed(config.study.seed, trial.number)
                    trial.set_user_attr("seed", seed)
                    trial.set_user_attr(WORKER_ATTR, worker_name())
                    if pack is None:
                        # The pack's batch order follows its first member's seed.
                        pack = Pack(config, splits, shuffle_seed=seed)
                    pack.admit(trial.number, reg, seed)
                    trial.set_user_attr(
                        BATCH_ORDER_ATTR, BatchOrder(pack.shuffle_seed, pack.epochs_run).as_attr()
                    )
                    heart.add(trial.number)
                    if listener is not None:
                        listener.trial_started(trial)
                if others_running:
                    if listener is not None:
                        listener.waiting_for_others(others_running)
                    time.sleep(WAIT_POLL_S)
                    continue
                if pack is None or not running:
                    break
                for frozen in _epoch(study, pack, running, epoch_listener):
                    heart.discard(frozen.number)
                    outcome.finished.append(frozen)
                    if listener is not None:
                        listener.trial_finished(frozen)
        except (KeyboardInterrupt, Terminated) as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated (SIGTERM)"
            with signals_deferred():  # a second Ctrl-C must not leave a member half-told
                for trial in running.values():
                    _fail_and_requeue(study, trial, reason)
            raise
        except Exception as exc:
            with signals_deferred():
                for trial in running.values():
                    trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
                    study.tell(trial, state=TrialState.FAIL)
            raise
    return outcome


def _epoch(
    study: optuna.Study,
    pack: Pack,
    running: dict[Hashable, optuna.Trial],
    epoch_listener: EpochListener | None,
) -> list[FrozenTrial]:
    """Train the pack one epoch; report, prune and finish members; return finished trials."""
    rows = pack.run_epoch()
    leaving: set[Hashable] = set()
    pruned: set[Hashable] = set()
    diverged: dict[Hashable, MemberEpoch] = {}
    for row in rows:
        trial = running[row.key]
        if row.diverged:
            diverged[row.key] = row
            leaving.add(row.key)
            continue
        trial.report(row.metrics.val_loss, row.metrics.epoch)
        if epoch_listener is not None:
            epoch_listener(trial.number, row.metrics)
        if trial.should_prune():
            pruned.add(row.key)
            leaving.add(row.key)
        elif row.done:
            leaving.add(row.key)
    finished = []
    for key, result in pack.release(leaving, pruned=pruned):
        with signals_deferred():  # told whole, or (after an interrupt) failed and re-queued
            finished.append(_tell(study, running[key], result, diverged.get(key)))
            del running[key]
    return finished


def _tell(
    study: optuna.Study, trial: optuna.Trial, result: FitResult, diverged: MemberEpoch | None
) -> FrozenTrial:
    attrs: dict[str, object] = dict(result.user_attrs())
    if diverged is not None:
        m = diverged.metrics
        kind = "NaN" if math.isnan(m.val_loss) or math.isnan(m.train_loss) else "inf"
        attrs["fail_reason"] = (
            f"loss became {kind} at epoch {m.epoch} (train {m.train_loss}, validation {m.val_loss})"
        )
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if diverged is not None:
        return study.tell(trial, state=TrialState.FAIL)
    if result.pruned:
        return study.tell(trial, state=TrialState.PRUNED)
    return study.tell(trial, result.best_val_loss)


class _Heartbeats:
    """One thread that records a heartbeat for every running member, every interval."""

    def __init__(self, storage: optuna.storages.BaseStorage, study: optuna.Study) -> None:
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.trial_ids: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def add(self, number: int) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        with self.lock:
            self.trial_ids[number] = trial_id
        self._beat([trial_id])  # at once: a new member is alive before the first interval

    def discard(self, number: int) -> None:
        with self.lock:
            self.trial_ids.pop(number, None)

    def _beat(self, trial_ids: list[int]) -> None:
        assert isinstance(self.storage, BaseHeartbeat)
        for trial_id in trial_ids:
            with contextlib.suppress(Exception):  # a dropped connection: try at the next beat
                self.storage.record_heartbeat(trial_id)

    def run(self, interval: float) -> None:
        while not self.stop.wait(interval):
            with self.lock:
                ids = list(self.trial_ids.values())
            self._beat(ids)


class _NoHeartbeats:
    def add(self, number: int) -> None:
        pass

    def discard(self, number: int) -> None:
        pass


@contextlib.contextmanager
def _heartbeats(
    storage: optuna.storages.BaseStorage | None, study: optuna.Study
) -> Iterator[_Heartbeats | _NoHeartbeats]:
    if storage is None or not isinstance(storage, BaseHeartbeat):
        yield _NoHeartbeats()
        return
    heart = _Heartbeats(storage, study)
    interval = storage.get_heartbeat_interval() or 60
    thread = threading.Thread(
        target=heart.run, args=(interval,), name="heartbeat-pack", daemon=True
    )
    thread.start()
    try:
        yield heart
    finally:
        heart.stop.set()
        thread.join()
