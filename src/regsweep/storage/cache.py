"""What a worker's study reads and writes through: Optuna's cache, plus a worker's own trials.

Optuna wraps an RDB storage in a per-process cache (``_CachedStorage``) that keeps finished
trials in memory but goes to the database at every call about a running one. A worker's
own running trial is exactly where a sweep's bookkeeping happens: five suggestions, a
report every epoch, the pruner reading the trial back after every report, a dozen user
attributes at its end, and every read of the study (by ``ask``, the sampler, the pruner)
loading it again whole. On ``sweeps/breast_cancer.yaml`` (epochs of about 10 ms) that was
about 200 SQL statements per trial and as much time as the training itself
(BENCHMARKS.md, "Trial overhead").

For the trials this process holds (it asked them, or took them from the queue, and has
not told them yet), this cache:

- writes their parameters, intermediate values, user and system attributes in batches,
  one transaction each: the parameters and the sampler's notes together once drawn
  (``drawn_together``, before the trial trains, so that a retry runs the same config),
  the pruner's rungs at once (other workers' pruners compare with them), the rest once
  the trial's last write is ``WRITE_INTERVAL_S`` old; and every pending write before the
  trial is read from this process or its state changes. Optuna's own cache promises no
  more (a write may be lost if the process dies; all of them are stored before the
  trial's state changes), so a tell, a retry or a recovered trial sees what it saw
  before, and a dashboard still sees every epoch, at most ``WRITE_INTERVAL_S`` (or one
  epoch) later;
- keeps their copies in the study's cache current with those writes, so that reads of
  the study do not load them again while they run (``private.CachedStorage``), a tell
  reads only the trial's state (another worker may have failed it as stale), and a trial
  it tells stays cached as stored;
- keeps their system attributes in memory. Only the worker that holds a trial writes them
  (Hyperband's rungs, the sampler's notes: heartbeat recovery writes a running trial's
  state and a user attribute, and queues new trials), and a pruner reads them back at
  every ``should_prune``, which loaded the whole trial each time;
- keeps the id of a study name: Hyperband looks it up at every ``should_prune``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from regsweep.storage import private
from regsweep.storage.rdb import ReconnectingRDBStorage

# How long a held trial's intermediate values and user attributes may wait in memory. Far
# below what a person watching a dashboard notices; long enough that epochs of a few
# milliseconds share a transaction. Epochs longer than this are written one by one, as
# before.
WRITE_INTERVAL_S = 0.1


@dataclass
class _Held:
    """A trial this process holds: its writes not yet stored, and what it knows of it."""

    written_at: float  # monotonic time it was taken, then of its last write to the database
    params: dict[str, private.ParamRecord] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    new_system_attrs: dict[str, Any] = field(default_factory=dict)  # not stored yet
    system_attrs: dict[str, Any] | None = None  # all of them; None until read once
    drawing: bool = False  # its parameters are being drawn (``drawn_together``)
    # Whether the study's cached copy of it is current (this process's writes are applied
    # to it): true for a trial it created, and for one it took from the queue once a read
    # has loaded it as running.
    current: bool = False
    # Created by this process and not read since: Optuna's Trial reads it back at once,
    # and gets the copy Optuna's cache made of it when it was created.
    fresh: bool = False

    @property
    def pending(self) -> bool:
        return bool(
            self.params or self.intermediate_values or self.user_attrs or self.new_system_attrs
        )

    def apply_pending(self, trial: FrozenTrial) -> None:
        """Make ``trial`` (a copy read from the database) show the writes not yet stored."""
        for name, (value, distribution, _) in self.params.items():
            trial.params[name] = distribution.to_external_repr(value)
            trial.distributions[name] = distribution
        trial.intermediate_values.update(self.intermediate_values)
        trial.user_attrs.update({key: _as_stored(value) for key, value in self.user_attrs.items()})
        trial.system_attrs.update(
            {key: _as_stored(value) for key, value in self.new_system_attrs.items()}
        )


class WorkerCache(private.CachedStorage):
    """Optuna's cache around ``backend``, with the batched writes and the memory above."""

    def __init__(self, backend: ReconnectingRDBStorage) -> None:
        super().__init__(backend)
        self.backend = backend
        self._held: dict[int, _Held] = {}  # trial id -> what this process holds of it
        self._study_ids: dict[str, int] = {}
        self._final: set[int] = set()  # told here; the cached copy is the stored trial
        # A study is used from one thread in regsweep; the lock keeps the buffers whole should
        # a caller use it from more. Taken before Optuna's own lock, never after it (the
        # hooks Optuna's read calls under its lock only look up ``_held`` and ``_final``).
        self._guard = threading.RLock()

    # -- studies -----------------------------------------------------------------------

    def get_study_id_from_name(self, study_name: str) -> int:
        with self._guard:
            if study_name not in self._study_ids:
                self._study_ids[study_name] = super().get_study_id_from_name(study_name)
            return self._study_ids[study_name]

    def delete_study(self, study_id: int) -> None:
        with self._guard:
            self._study_ids = {n: i for n, i in self._study_ids.items() if i != study_id}
        super().delete_study(study_id)

    # -- which trials this process holds -----------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        with self._guard:
            trial_id = super().create_new_trial(study_id, template_trial)
            if template_trial is None or template_trial.state == TrialState.RUNNING:
                # Optuna's cache keeps the trial as created: that copy is current.
                self._held[trial_id] = _Held(time.monotonic(), current=True, fresh=True)
            return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with self._guard:
            held = self._held.get(trial_id)
            try:
                self.flush(trial_id)  # its writes are stored before its state changes
                changed = super().set_trial_state_values(trial_id, state, values)
            finally:
                if state.is_finished():
                    self._held.pop(trial_id, None)
            if state == TrialState.RUNNING and changed:  # taken from the queue
                self._held[trial_id] = _Held(time.monotonic())
            elif state.is_finished() and held is not None and held.current:
                # Told by this process: its copy in the cache becomes the stored trial, and
                # neither the tell nor the next read of the study loads it again.
                _, completed = self.backend.get_trial_state_and_end(trial_id)

                def finish(trial: FrozenTrial) -> None:
                    trial.state = state
                    trial.values = None if values is None else [float(v) for v in values]
                    trial.datetime_complete = completed

                self.edit_cached(trial_id, finish)
                self._final.add(trial_id)
            return changed

    def skips_reading(self, trial_id: int) -> bool:
        held = self._held.get(trial_id)  # called under Optuna's lock: not under ours
        return held is not None and held.current

    def has_final_copy(self, trial_id: int) -> bool:
        if trial_id in self._final:  # called once per trial, under Optuna's lock
            self._final.discard(trial_id)
            return True
        return False

    def trials_read(self, trials: list[FrozenTrial]) -> None:
        with self._guard:
            for trial in trials:
                held = self._held.get(private.trial_id(trial))
                if held is None:
                    continue
                held.current = trial.state == TrialState.RUNNING
                if held.current and held.pending:  # loaded without what it holds back
                    self.edit_cached(private.trial_id(trial), held.apply_pending)

    # -- writes of held trials ---------------------------------------------------------

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
                return
            # As Optuna's cache does: checked against the first distribution of that name,
            # here at once (a contradicting one raises ValueError in suggest_*, as before).
            previous = self.known_distribution(trial_id, param_name)
            if previous is not None:
                check_distribution_compatibility(previous, distribution)
            held.params[param_name] = (param_value_internal, distribution, previous)
            self.remember_distribution(trial_id, param_name, distribution)
            if held.current:
                external = distribution.to_external_repr(param_value_internal)

                def add_param(trial: FrozenTrial) -> None:
                    trial.params[param_name] = external
                    trial.distributions[param_name] = distribution

                self.edit_cached(trial_id, add_param)
            # Not written yet: a trial's suggestions come one after another, and go out
            # together, with its next write or read.

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                super().set_trial_intermediate_value(trial_id, step, intermediate_value)
                return
            held.intermediate_values[step] = intermediate_value
            if held.current:
                self.edit_cached(
                    trial_id,
                    lambda trial: trial.intermediate_values.update({step: intermediate_value}),
                )
            self._write_if_due(trial_id, held)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                super().set_trial_user_attr(trial_id, key, value)
                return
            held.user_attrs[key] = value
            if held.current:
                stored = _as_stored(value)
                self.edit_cached(trial_id, lambda trial: trial.user_attrs.update({key: stored}))
            self._write_if_due(trial_id, held)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                super().set_trial_system_attr(trial_id, key, value)
                return
            held.new_system_attrs[key] = value
            if held.system_attrs is not None:
                held.system_attrs[key] = value
            if held.current:
                stored = _as_stored(value)
                self.edit_cached(trial_id, lambda trial: trial.system_attrs.update({key: stored}))
            # At once, with whatever else is pending: other workers' pruners compare their
            # trials with this one's rungs. While its parameters are drawn, the sampler's
            # notes wait for them (a moment).
            if not held.drawing:
                self.flush(trial_id)

    @contextlib.contextmanager
    def drawing(self, trial_id: int) -> Iterator[None]:
        """Hold back the trial's parameters and its sampler's notes while they are drawn,
        then store them as one write."""
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                yield
                return
            held.drawing = True
            try:
                yield
            finally:
                held.drawing = False
            self.flush(trial_id)

    def _write_if_due(self, trial_id: int, held: _Held) -> None:
        # Parameters wait for no interval (only for the others being drawn): a retry of
        # this trial (its worker killed) runs with the parameters stored for it.
        if held.drawing:
            return
        if held.params or time.monotonic() - held.written_at >= WRITE_INTERVAL_S:
            self.flush(trial_id)

    def flush(self, trial_id: int) -> None:
        """Store the pending writes of ``trial_id`` now, in one transaction.

        Raises ``UpdateFinishedTrialError`` if the trial was finished elsewhere, as the
        writes themselves would have; it is then no longer held, so that every later write
        raises too, and reads load it again.
        """
        with self._guard:
            held = self._held.get(trial_id)
            if held is None or not held.pending:
                return
            params, values = held.params, held.intermediate_values
            attrs, system_attrs = held.user_attrs, held.new_system_attrs
            held.params, held.intermediate_values = {}, {}
            held.user_attrs, held.new_system_attrs = {}, {}
            try:
                self.backend.set_trial_records(trial_id, params, values, attrs, system_attrs)
            except UpdateFinishedTrialError:
                self._held.pop(trial_id, None)
                raise
            except BaseException:
                # Not stored: pending again (under anything written since), so that the
                # cached copy is never taken for what the database holds.
                held.params = {**params, **held.params}
                held.intermediate_values = {**values, **held.intermediate_values}
                held.user_attrs = {**attrs, **held.user_attrs}
                held.new_system_attrs = {**system_attrs, **held.new_system_attrs}
                raise
            held.written_at = time.monotonic()

    # -- reads of held trials ----------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._guard:
            self.flush(trial_id)  # what this process wrote, it reads back
            held = self._held.get(trial_id)
            trial = None
            if held is not None and held.fresh:
                trial = self.cached_copy(trial_id)  # as created, moments ago
            elif held is not None and held.current:
                # Its copy holds all that is stored of it, if no other worker has failed it
                # meanwhile (as stale): only its state is read (``tell`` reads it first).
                state, _ = self.backend.get_trial_state_and_end(trial_id)
                if state == TrialState.RUNNING:
                    trial = self.cached_copy(trial_id)
            if trial is None:
                trial = super().get_trial(trial_id)
            if held is not None:
                held.fresh = False
                if held.system_attrs is None:
                    # Optuna's Trial reads its trial once when it is made: from then on,
                    # this process knows its system attributes.
                    held.system_attrs = dict(trial.system_attrs)
            return trial

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None or held.system_attrs is None:
                return super().get_trial_system_attrs(trial_id)  # through get_trial above
            return dict(held.system_attrs)


def _as_stored(value: Any) -> Any:
    """``value`` as the database gives it back: attributes are stored as JSON (a tuple comes
    back a list, an integer key a string)."""
    return json.loads(json.dumps(value))


def store_now(trial: optuna.Trial) -> None:
    """Write what ``trial``'s worker holds back for it (if its study is on a worker cache)."""
    storage = private.trial_storage(trial)
    if isinstance(storage, WorkerCache):
        storage.flush(private.trial_id(trial))


@contextlib.contextmanager
def drawn_together(trial: optuna.Trial) -> Iterator[None]:
    """Store ``trial``'s parameters drawn inside, and what its sampler notes meanwhile, as
    one write at the end (on a worker cache; elsewhere each is written when made)."""
    storage = private.trial_storage(trial)
    if not isinstance(storage, WorkerCache):
        yield
        return
    with storage.drawing(private.trial_id(trial)):
        yield


def worker_storage(storage: Any) -> Any:
    """What a worker opens its study on: ``storage`` behind a :class:`WorkerCache` if it is
    regsweep's RDB storage on a database with upserts, else ``storage`` itself (in-memory
    storages need no cache; without upserts, Optuna's own writes, one at a time)."""
    if isinstance(storage, ReconnectingRDBStorage) and private.has_upserts(storage):
        return WorkerCache(storage)
    return storage
