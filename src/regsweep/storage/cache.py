"""What a worker's study reads and writes through: Optuna's cache, plus a worker's own trials.

Optuna wraps an RDB storage in a per-process cache (``_CachedStorage``) that keeps finished
trials in memory but goes to the database at every call about a running one. A worker's
own running trial is exactly where a sweep's bookkeeping happens: a report every epoch,
the pruner reading the trial back after every report, a dozen user attributes at its
end. On ``sweeps/breast_cancer.yaml`` (epochs of about 10 ms) that was about 200 SQL
statements per trial and as much time as the training itself (BENCHMARKS.md, "Trial
overhead"). For the trials this process holds (it asked them, or took them from the
queue, and has not told them yet), this cache:

- writes their intermediate values and user attributes in batches, one transaction each:
  a write goes out at once when the trial's last one is ``WRITE_INTERVAL_S`` old, else
  with the next write after that, and every pending write goes out before the trial is
  read from this process or its state changes. Optuna's own cache promises no more (a
  write may be lost if the process dies; all of them are stored before the trial's state
  changes), so a tell, a retry or a recovered trial sees what it saw before; a dashboard
  still sees every epoch, at most ``WRITE_INTERVAL_S`` (or one epoch) later.
- keeps their system attributes in memory once read. Only the worker that holds a trial
  writes them (Hyperband's rungs, the sampler's notes: heartbeat recovery writes the
  state and the trials it queues, never a running trial's system attributes), and a
  pruner reads them back at every ``should_prune``, which read the whole trial each time.
- keeps the id of a study name: Hyperband looks it up at every ``should_prune``.

Parameters (``suggest_*``) and system attributes are still written at once: a dead
worker's trial is retried with the parameters stored for it, and other workers' pruners
compare their trials with this one's rungs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
    """A trial this process holds: its writes not yet stored, and its system attributes."""

    written_at: float = -math.inf  # monotonic time of its last write to the database
    intermediate_values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] | None = None  # None until read once

    @property
    def pending(self) -> bool:
        return bool(self.intermediate_values or self.user_attrs)


class WorkerCache(private.CachedStorage):
    """Optuna's cache around ``backend``, with the batched writes and the memory above."""

    def __init__(self, backend: ReconnectingRDBStorage) -> None:
        super().__init__(backend)
        self.backend = backend
        self._held: dict[int, _Held] = {}  # trial id -> what this process holds of it
        self._study_ids: dict[str, int] = {}
        # A study is used from one thread in regsweep; the lock only keeps the buffers whole
        # should a caller use it from more.
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
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            with self._guard:
                self._held[trial_id] = _Held()
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with self._guard:
            try:
                self.flush(trial_id)  # its writes are stored before its state changes
                changed = super().set_trial_state_values(trial_id, state, values)
            finally:
                if state.is_finished():
                    self._held.pop(trial_id, None)
            if state == TrialState.RUNNING and changed:  # taken from the queue
                self._held[trial_id] = _Held()
            return changed

    # -- writes of held trials ---------------------------------------------------------

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                super().set_trial_intermediate_value(trial_id, step, intermediate_value)
                return
            held.intermediate_values[step] = intermediate_value
            self._write_if_due(trial_id, held)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None:
                super().set_trial_user_attr(trial_id, key, value)
                return
            held.user_attrs[key] = value
            self._write_if_due(trial_id, held)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._guard:
            super().set_trial_system_attr(trial_id, key, value)
            held = self._held.get(trial_id)
            if held is not None and held.system_attrs is not None:
                held.system_attrs[key] = value

    def _write_if_due(self, trial_id: int, held: _Held) -> None:
        if time.monotonic() - held.written_at >= WRITE_INTERVAL_S:
            self.flush(trial_id)

    def flush(self, trial_id: int) -> None:
        """Store the pending writes of ``trial_id`` now, in one transaction.

        Raises ``UpdateFinishedTrialError`` if the trial was finished elsewhere, as the
        writes themselves would have; it is then no longer held, so that every later write
        raises too.
        """
        with self._guard:
            held = self._held.get(trial_id)
            if held is None or not held.pending:
                return
            values, attrs = held.intermediate_values, held.user_attrs
            held.intermediate_values, held.user_attrs = {}, {}
            try:
                self.backend.set_trial_records(trial_id, values, attrs)
            except UpdateFinishedTrialError:
                self._held.pop(trial_id, None)
                raise
            held.written_at = time.monotonic()

    # -- reads of held trials ----------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._guard:
            self.flush(trial_id)  # what this process wrote, it reads back
            trial = super().get_trial(trial_id)
            held = self._held.get(trial_id)
            if held is not None and held.system_attrs is None:
                # Optuna's Trial reads its trial once when it is made: from then on, this
                # process knows its system attributes.
                held.system_attrs = dict(trial.system_attrs)
            return trial

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        with self._guard:
            held = self._held.get(trial_id)
            if held is None or held.system_attrs is None:
                return super().get_trial_system_attrs(trial_id)  # through get_trial above
            return dict(held.system_attrs)


def worker_storage(storage: Any) -> Any:
    """What a worker opens its study on: ``storage`` behind a :class:`WorkerCache` if it is
    regsweep's RDB storage, else ``storage`` itself (in-memory storages need no cache)."""
    return WorkerCache(storage) if isinstance(storage, ReconnectingRDBStorage) else storage
