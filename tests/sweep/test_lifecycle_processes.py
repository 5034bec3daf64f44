"""The lifecycle's crash holes with real worker processes, real signals and real SQLite.

- A packed worker keeps helping with retries once the budget looks full.
- A trial that another worker failed (its heartbeat looked stale) is dropped, not a crash.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from regsweep.sweep.budget import retried_number
from tests.conftest import IdxData
from tests.processes import StudyWatch, reaped, regsweep, start, unique_name, wait_until
from tests.sweep.test_workers import assert_budget_met, assert_clean_output, write_sweep


@pytest.fixture
def watch(tmp_path: Path) -> StudyWatch:
    return StudyWatch(f"sqlite:///{tmp_path / 'shared.db'}", unique_name("lifecycle"))


def test_a_packed_worker_runs_the_retry_of_a_dead_workers_trial(
    watch: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    n_trials = 3
    # 300 epochs: the victim is surely inside its trial when killed after the first.
    sweep = write_sweep(tiny_idx, tmp_path, watch, n_trials=n_trials, epochs=300)
    victim = start(regsweep("worker", sweep), tmp_path / "victim.log", cwd=tmp_path)
    with reaped([victim]):
        doomed = wait_until(lambda: watch.running_in(victim), "a victim's trial", procs=[victim])
        victim.popen.send_signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
    # The budget now looks full to a packed worker: the dead trial still counts as running.
    packed = start(regsweep("worker", sweep, "--pack", "4"), tmp_path / "packed.log", cwd=tmp_path)
    with reaped([packed]):
        assert packed.wait() == 0, packed.output()
    assert_clean_output(packed, watch.url)
    trials = {t.number: t for t in watch.trials()}
    dead = trials[doomed.number]
    assert dead.state == TrialState.FAIL
    assert "heartbeat" in dead.user_attrs["fail_reason"], dead.user_attrs
    (retry,) = [t for t in trials.values() if retried_number(t) == doomed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == doomed.params
    assert_budget_met(watch, n_trials)


@pytest.mark.parametrize("pack", [1, 2])
def test_a_trial_failed_elsewhere_is_dropped_with_one_line(
    watch: StudyWatch, tiny_idx: IdxData, tmp_path: Path, pack: int
) -> None:
    """Another worker judged our heartbeat stale and failed our trial: we go on."""
    sweep = write_sweep(tiny_idx, tmp_path, watch, n_trials=2, epochs=100_000)
    worker = start(
        regsweep("worker", sweep, "--pack", str(pack)), tmp_path / "worker.log", cwd=tmp_path
    )
    failed: list[int] = []
    with reaped([worker]):
        for _ in range(2):  # each trial runs forever, until it is failed from outside
            running = wait_until(
                lambda: next(
                    (
                        t
                        for t in watch.trials()
                        if t.state == TrialState.RUNNING
                        and t.number not in failed
                        and t.intermediate_values
                    ),
                    None,
                ),
                "a running trial",
                procs=[worker],
            )
            trial_id = watch.storage.get_trial_id_from_study_id_trial_number(
                watch.storage.get_study_id_from_name(watch.name), running.number
            )
            watch.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            failed.append(running.number)
        assert worker.wait() == 0, worker.output()
    out = worker.output()
    assert_clean_output(worker, watch.url)
    for number in failed:
        lines = [
            line for line in out.splitlines() if f"trial {number} was failed by another" in line
        ]
        assert len(lines) == 1, out
    assert sorted(t.state for t in watch.trials()) == [TrialState.FAIL, TrialState.FAIL]
