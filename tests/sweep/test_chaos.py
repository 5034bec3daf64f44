"""Chaos (issue 9): a mixed fleet of workers on PostgreSQL while a seeded driver kills
workers (SIGKILL), stops them (SIGTERM) and cuts their database connections
(``pg_terminate_backend``), starting a replacement after every kill or stop. The study
must end with exactly its budget of complete and pruned trials, every failed trial
retried once, and nothing RUNNING or WAITING.

Black-box: real ``regsweep worker`` processes, read from outside with Optuna once they
are gone. The seed fixes the schedule: which faults, at which point of the study's
progress (plus a random delay, so a fault lands anywhere in a trial), which of the workers
busy at that moment, and the pack of each replacement. Process timing still varies from
run to run, so ``REGSWEEP_CHAOS_SEED`` lets a failure be chased with other seeds too.

Faults fire at progress points (finished trials), not at wall-clock times, so that a
faster or slower machine still sees every fault while trials run.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import FrozenTrial, TrialState

from regsweep.sweep.lifecycle import GIVEN_BACK_REASON
from tests.conftest import IdxData, idx_sweep, make_idx_dataset
from tests.processes import Proc, StudyWatch, reaped, regsweep, start, unique_name, wait_until

SEED = int(os.environ.get("REGSWEEP_CHAOS_SEED", "9"))

# The user attribute regsweep puts on the trial it queues for a SIGTERMed (or Ctrl-C'd)
# trial; a heartbeat retry instead carries Optuna's ``retry_history`` system attribute.
RETRY_ATTR = "retry_of"
SIGTERM_REASON = "terminated (SIGTERM)"
LOST_DB = "error: study.storage: lost the database"

HEARTBEAT_S = 1
# Several heartbeats long: on two busy cores a live worker's beat can come late, and a
# live trial failed as stale would be a fault of the test, not of regsweep.
GRACE_S = 6

N_TRIALS = 32
EPOCHS = 12
FIRST_FLEET = (1, 4, 1, 4)  # packs of the workers started first: two solo, two packed
FAULTS = ("SIGKILL",) * 3 + ("SIGTERM",) * 3 + ("CONNECTIONS",) * 2
# Faults fire once this share of the budget is finished, at the latest: the rest leaves
# room for retries and for the replacements to take part.
LAST_FAULT_AT = 0.7
MAX_JITTER_S = 2.0
# A study where no epoch is reported for this long has a trial stranded: a dead worker's
# trial is retried after GRACE_S, and an epoch takes well under a second.
STALL_S = 30.0
MAX_WORKERS = 24  # replacements for workers that die by themselves are bounded too
# A backstop only (the stall check ends a stuck run early): on two cores that other work
# keeps busy, a worker's start alone has taken a minute, and the run five.
RUN_DEADLINE_S = 480.0

pytestmark = pytest.mark.postgres


@dataclass
class Worker:
    index: int
    pack: int
    proc: Proc
    faults: list[str] = field(default_factory=list)  # what the driver did to it, in order
    signalled: str = ""  # SIGKILL or SIGTERM, once sent
    running_at_signal: tuple[int, ...] = ()
    exit_code: int | None = None
    noted: bool = False  # its exit has been logged
    ready: bool = False  # it has joined the study (its first line is out)

    @property
    def name(self) -> str:
        """As regsweep records it in a trial's ``worker`` attribute."""
        return f"{socket.gethostname()}:{self.proc.pid}"

    def label(self) -> str:
        return f"w{self.index} (pack {self.pack}, pid {self.proc.pid})"

    def tail(self, lines: int = 6) -> str:
        text = self.proc.output().strip().splitlines()[-lines:]
        return "\n".join(f"    | {line}" for line in text)


class Fleet:
    """The workers of one study, started and watched by the driver; logs what happens."""

    def __init__(self, sweep: Path, folder: Path, watch: StudyWatch, started: float) -> None:
        self.sweep = sweep
        self.folder = folder
        self.watch = watch
        self.started = started
        self.workers: list[Worker] = []
        self.procs: list[Proc] = []  # for reaped(), which kills what is left at the end
        self.events: list[str] = []
        self.last_ready = started  # when a worker last joined the study

    def log(self, event: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f} s  {event}"
        self.events.append(line)
        print(line, flush=True)

    def start(self, pack: int, why: str) -> Worker:
        index = len(self.workers)
        proc = start(
            regsweep("worker", self.sweep, "--pack", str(pack), "--set", "train.threads=1"),
            self.folder / f"worker-{index}-pack{pack}.log",
            cwd=self.folder,
        )
        worker = Worker(index, pack, proc)
        self.workers.append(worker)
        self.procs.append(proc)
        self.log(f"start {worker.label()}: {why}")
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.proc.popen.poll() is None]

    def by_name(self) -> dict[str, Worker]:
        return {w.name: w for w in self.workers}

    def busy(self, trials: list[FrozenTrial]) -> dict[int, list[int]]:
        """Live workers (by index) with the numbers of the trials they are running."""
        live = {w.name: w for w in self.live()}
        running: dict[int, list[int]] = {}
        for trial in trials:
            worker = live.get(str(trial.user_attrs.get("worker")))
            if trial.state == TrialState.RUNNING and worker is not None:
                running.setdefault(worker.index, []).append(trial.number)
        return running

    def supervise(self, rng: random.Random) -> None:
        """Log workers that exited; replace one that died by itself (not by the driver)."""
        for worker in self.workers:
            if not worker.ready and "regsweep worker" in worker.proc.output():
                worker.ready, self.last_ready = True, time.monotonic()
            code = worker.proc.popen.poll()
            if code is None or worker.noted:
                continue
            worker.exit_code, worker.noted = code, True
            if worker.signalled:
                continue  # logged where the signal was sent
            last = (worker.proc.output().strip().splitlines() or [""])[-1]
            self.log(f"{worker.label()} exited {code} by itself: {last[:160]}")
            if code != 0 and len(self.workers) < MAX_WORKERS:
                self.start(rng.choice((1, 4)), f"replaces w{worker.index}, which exited {code}")

    def idle(self, seconds: float, rng: random.Random) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.supervise(rng)
            time.sleep(0.1)


@dataclass(frozen=True)
class Fault:
    after: int  # fires once this many trials are finished (complete or pruned) ...
    delay: float  # ... and this many seconds more
    kind: str  # SIGKILL, SIGTERM or CONNECTIONS


def schedule(rng: random.Random, n_trials: int) -> list[Fault]:
    kinds = list(FAULTS)
    rng.shuffle(kinds)
    points = sorted(rng.randint(1, int(n_trials * LAST_FAULT_AT)) for _ in kinds)
    return [
        Fault(p, round(rng.uniform(0, MAX_JITTER_S), 2), k)
        for p, k in zip(points, kinds, strict=True)
    ]


def finished(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))


def predecessor(trial: FrozenTrial) -> int | None:
    """The trial that ``trial`` retries directly, if it is a retry.

    A heartbeat retry lists the whole chain in ``retry_history`` (its ``failed_trial`` is
    the chain's first trial; it starts without the user attributes of the trial it
    retries), so the chain's last entry is the one it retries.
    """
    history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
    if history:
        return int(history[-1])
    number = trial.user_attrs.get(RETRY_ATTR)
    return int(number) if number is not None else None


def heartbeat_ages(url: str, study_name: str) -> dict[int, float | None]:
    """Seconds since each RUNNING trial's last heartbeat; None if it never sent one.

    Read from Optuna's tables: only for failure messages, which must say why a trial
    was never recovered (a trial without any heartbeat is never found stale).
    """
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT t.number, EXTRACT(EPOCH FROM (LOCALTIMESTAMP - h.heartbeat)) "
                    "FROM trials t JOIN studies s ON s.study_id = t.study_id "
                    "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
                    "WHERE s.study_name = :name AND t.state = 'RUNNING'"
                ),
                {"name": study_name},
            )
            return {int(n): None if age is None else float(age) for n, age in rows}
    finally:
        engine.dispose()


def describe(
    trial: FrozenTrial,
    workers: dict[str, Worker],
    ages: dict[int, float | None],
    started: float,
) -> str:
    """One line on ``trial`` for a failure message; ``started`` is the run's time.time()."""
    name = str(trial.user_attrs.get("worker", "?"))
    worker = workers.get(name)
    if worker is not None:
        who = f"{worker.label()}, faults {worker.faults or 'none'}"
    else:
        who = "its worker attribute was never set" if name == "?" else "not a worker of this test"
    epochs = len(trial.intermediate_values)
    text = f"trial {trial.number} {trial.state.name} after {epochs} epochs by {name} ({who})"
    if trial.state == TrialState.RUNNING:
        if trial.datetime_start is not None:  # set by the asking worker's clock: this one
            text += f", asked at {trial.datetime_start.timestamp() - started:.1f} s"
        age = ages.get(trial.number)
        text += ", never sent a heartbeat" if age is None else f", last heartbeat {age:.0f} s ago"
    elif trial.datetime_complete is not None:
        text += f", ended at {trial.datetime_complete.timestamp() - started:.1f} s"
    if "fail_reason" in trial.user_attrs:
        text += f", fail_reason {trial.user_attrs['fail_reason']!r}"
    return text


def budget_problems(
    trials: list[FrozenTrial],
    n_trials: int,
    workers: dict[str, Worker],
    ages: dict[int, float | None],
    started: float,
) -> list[str]:
    """What is wrong with a study that should hold exactly its budget, all told."""
    problems = []
    states = Counter(t.state.name for t in trials)
    print(f"trials: {len(trials)} in all, {dict(states)}")
    stuck = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if stuck:
        problems.append(
            f"{len(stuck)} trials left RUNNING or WAITING:\n"
            + "\n".join(f"  {describe(t, workers, ages, started)}" for t in stuck)
        )
    retries: dict[int, list[int]] = {}
    for trial in trials:
        before = predecessor(trial)
        if before is not None:
            retries.setdefault(before, []).append(trial.number)
    by_number = {t.number: t for t in trials}
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retried_once = sum(1 for t in failed if len(retries.get(t.number, [])) == 1)
    print(f"failed trials: {len(failed)}, each retried once: {retried_once}")
    for trial in failed:
        numbers = retries.get(trial.number, [])
        # A trial taken beyond the budget while its worker's lock was lost is given back:
        # the trial another worker took meanwhile stands in for it.
        wanted = 0 if trial.user_attrs.get("fail_reason") == GIVEN_BACK_REASON else 1
        if len(numbers) != wanted:
            problems.append(
                f"{describe(trial, workers, ages, started)} has retries {numbers} "
                f"(a failed trial must be retried {'never' if wanted == 0 else 'exactly once'}, "
                "or the budget miscounts it)"
            )
    for before, numbers in sorted(retries.items()):
        target = by_number.get(before)
        if target is None or target.state != TrialState.FAIL:
            problems.append(
                f"trials {numbers} retry trial {before}, which is "
                f"{target.state.name if target else 'missing'}, not FAIL"
            )
    # A heartbeat retry's failed_trial names the first trial of its chain, not the one it
    # retries: a count of retried trials that reads it misses the middle of the chain.
    chains = []
    for trial in trials:
        history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
        if len(history) > 1:
            first = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
            chains.append(
                f"  trial {trial.number} retries {history[-1]} (retry_history {history}, "
                f"failed_trial {first})"
            )
    print(f"heartbeat retries of heartbeat retries: {len(chains)}")
    told = finished(trials)
    print(f"complete + pruned: {told} of a budget of {n_trials}")
    if told != n_trials:
        problems.append(
            f"the study holds {told} complete or pruned trials, not its budget of {n_trials} "
            f"(states {dict(states)}); heartbeat retries of heartbeat retries: {len(chains)}"
            + "".join(f"\n{line}" for line in chains)
        )
    return problems


def exit_problems(fleet: Fleet) -> list[str]:
    """Each worker's exit status against what the driver did to it."""
    problems = []
    for worker in fleet.workers:
        code, output = worker.exit_code, worker.proc.output()
        if worker.signalled == "SIGKILL":
            continue
        if "Traceback" in output:
            problems.append(f"{worker.label()} printed a traceback:\n{worker.tail(20)}")
        if worker.signalled == "SIGTERM":
            expected = code == 143
        elif "CONNECTIONS" in worker.faults and code == 1:
            # Failing cleanly is allowed: one line, its trial recovered by heartbeat.
            lines = output.strip().splitlines()
            expected = bool(lines) and lines[-1].startswith(LOST_DB)
        else:
            expected = code == 0
        if not expected:
            problems.append(
                f"{worker.label()} exited {code} (faults {worker.faults or 'none'}):\n"
                f"{worker.tail()}"
            )
    return problems


def sigterm_problems(fleet: Fleet, trials: list[FrozenTrial]) -> list[str]:
    """A SIGTERMed worker's trials were failed as terminated and queued again."""
    problems = []
    by_number = {t.number: t for t in trials}
    # Queued by the worker itself (retry_of), not later by a survivor's heartbeat check.
    queued = {
        predecessor(t)
        for t in trials
        if RETRY_ATTR in t.user_attrs
        and not optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(t)
    }
    requeued = 0
    for worker in fleet.workers:
        if worker.signalled != "SIGTERM":
            continue
        for number in worker.running_at_signal:
            trial = by_number[number]
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                continue  # told between the driver's look and the signal
            if (
                trial.state == TrialState.FAIL
                and trial.user_attrs.get("fail_reason") == SIGTERM_REASON
                and number in queued
            ):
                requeued += 1
                continue
            problems.append(
                f"{worker.label()} was SIGTERMed inside trial {number}, which ended "
                f"{trial.state.name} with fail_reason {trial.user_attrs.get('fail_reason')!r}, "
                f"{'queued again' if number in queued else 'not queued again'}"
            )
    print(f"trials failed by SIGTERM and queued again: {requeued}")
    if requeued == 0 and not problems:
        problems.append("no SIGTERM landed inside a trial: the schedule did not test SIGTERM")
    return problems


def write_chaos_sweep(data: IdxData, folder: Path, watch: StudyWatch, **study: object) -> Path:
    raw = idx_sweep(
        data,
        folder,
        with_test=False,
        study={
            "name": watch.name,
            "storage": watch.url,
            "n_trials": N_TRIALS,
            # Pruning at half the epochs: pruned members leave a pack early and free a slot.
            "pruner": {"name": "median", "options": {"n_startup_trials": 5, "n_warmup_steps": 4}},
            "heartbeat_interval": HEARTBEAT_S,
            "grace_period": GRACE_S,
            # A trial may be hit more than once; the default cap (3) would leave a failure
            # unretried on purpose, which the budget then rightly counts.
            "max_retry": 50,
            **study,
        },
        train={"max_epochs": EPOCHS, "batch_size": 32},
        search_space={"patience": 1000},  # no early stopping: a trial runs its epochs
    )
    path = folder / f"{watch.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def terminate_backends(admin: sqlalchemy.Engine, worker: Worker) -> int:
    """Kill the worker's database connections, found by the name regsweep gives them."""
    app = f"regsweep {worker.name}"[:63]
    with admin.connect() as connection:
        killed = connection.execute(
            sqlalchemy.text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE application_name = :app"
            ),
            {"app": app},
        ).scalar_one()
    return int(killed)


class Driver:
    """Runs the schedule against the fleet, replacing every worker it kills or stops."""

    def __init__(self, fleet: Fleet, rng: random.Random, admin: sqlalchemy.Engine) -> None:
        self.fleet = fleet
        self.rng = rng
        self.admin = admin
        self.terminated = 0  # backends killed
        self.applied: Counter[str] = Counter()
        self.last_progress = (0, time.monotonic())
        self.last_report = time.monotonic()

    def trials(self) -> list[FrozenTrial]:
        trials = self.fleet.watch.trials()
        # Progress is any epoch reported or trial told: a start-up on busy cores is slow,
        # a study with a stranded trial makes none (its survivors only wait).
        done = finished(trials)
        progress = done + sum(len(t.intermediate_values) for t in trials)
        now = time.monotonic()
        if progress != self.last_progress[0]:
            self.last_progress = (progress, now)
        if now - self.last_report > 10:
            self.last_report = now
            running = sum(1 for t in trials if t.state == TrialState.RUNNING)
            self.fleet.log(
                f"progress: {done} finished, {running} running, "
                f"{len(self.fleet.live())} workers live"
            )
        return trials

    def stalled(self) -> bool:
        """Past the run's deadline, or no progress for STALL_S since a worker last joined (and
        none is starting)."""
        now = time.monotonic()
        if now - self.fleet.started > RUN_DEADLINE_S:
            return True
        # A worker starting up on busy cores can take a minute before its first epoch.
        if any(not w.ready for w in self.fleet.live()):
            return False
        return now - max(self.last_progress[1], self.fleet.last_ready) > STALL_S

    def wait_for(self, after: int) -> bool:
        """Until ``after`` trials are finished; False if the study stalls first."""
        while finished(self.trials()) < after:
            if self.stalled():
                return False
            self.fleet.idle(0.25, self.rng)
        return True

    def fire(self, fault: Fault) -> None:
        self.fleet.idle(fault.delay, self.rng)
        deadline = time.monotonic() + 15
        while True:  # a worker inside a trial: a fault between trials tests little
            busy = self.fleet.busy(self.trials())
            if busy or time.monotonic() > deadline:
                break
            self.fleet.idle(0.1, self.rng)
        if not busy:
            self.fleet.log(f"{fault.kind} skipped: no worker inside a trial for 15 s")
            return
        worker = self.fleet.workers[self.rng.choice(sorted(busy))]
        running = tuple(busy[worker.index])
        worker.faults.append(fault.kind)
        self.applied[fault.kind] += 1
        if fault.kind == "CONNECTIONS":
            killed = terminate_backends(self.admin, worker)
            self.terminated += killed
            self.fleet.log(f"CONNECTIONS {worker.label()} in trials {list(running)}: {killed}")
            return
        worker.signalled, worker.running_at_signal = fault.kind, running
        sig = signal.SIGKILL if fault.kind == "SIGKILL" else signal.SIGTERM
        worker.proc.popen.send_signal(sig)
        code = worker.proc.wait(timeout=60)
        worker.exit_code, worker.noted = code, True
        self.fleet.log(f"{fault.kind} {worker.label()} in trials {list(running)}: exit {code}")
        self.fleet.start(self.rng.choice((1, 4)), f"replaces w{worker.index}")


@pytest.mark.slow
@pytest.mark.timeout(RUN_DEADLINE_S + 120)
def test_chaos_fleet_ends_with_exactly_its_budget(postgres_url: str, tmp_path: Path) -> None:
    started, wall_started = time.monotonic(), time.time()
    rng = random.Random(SEED)
    faults = schedule(rng, N_TRIALS)
    print(f"chaos seed {SEED} (REGSWEEP_CHAOS_SEED), schedule:")
    for fault in faults:
        print(f"  {fault.kind:<11} after {fault.after:>2} finished trials + {fault.delay} s")
    data = make_idx_dataset(tmp_path / "data", n_train=3000, n_test=100)
    watch = StudyWatch(postgres_url, unique_name("chaos"))
    admin = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.NullPool)
    sweep = write_chaos_sweep(data, tmp_path, watch)
    fleet = Fleet(sweep, tmp_path, watch, started)
    driver = Driver(fleet, rng, admin)
    problems: list[str] = []
    try:
        with reaped(fleet.procs):
            for pack in FIRST_FLEET:
                fleet.start(pack, "first fleet")
            for fault in faults:
                if not driver.wait_for(fault.after):
                    problems.append(
                        f"stalled before the {fault.kind} due after {fault.after} finished "
                        f"trials: no epoch for {STALL_S:g} s, or past {RUN_DEADLINE_S:g} s"
                    )
                    break
                driver.fire(fault)
            # Survivors: the fleet as the faults left it, plus a fresh worker if few remain.
            if len(fleet.live()) < 2:
                fleet.start(1, "survivor")
            while fleet.live():
                driver.trials()
                if driver.stalled():
                    hung = fleet.live()
                    problems.append(
                        f"workers still running after {time.monotonic() - started:.0f} s, "
                        f"{time.monotonic() - driver.last_progress[1]:.0f} s after the last "
                        "epoch or trial reported:\n"
                        + "\n".join(f"  {w.label()}:\n{w.tail(3)}" for w in hung)
                    )
                    for worker in hung:
                        worker.signalled = "SIGKILL"  # by the test: its exit says nothing
                        worker.proc.popen.kill()
                        worker.proc.wait(timeout=30)
                    break
                fleet.idle(0.5, rng)
            fleet.supervise(rng)
        # Read after every worker is gone, as a user would.
        trials = watch.trials()
        ages = heartbeat_ages(postgres_url, watch.name)
        workers = fleet.by_name()
        print(f"faults applied: {dict(driver.applied)}, backends terminated: {driver.terminated}")
        print(f"workers started: {len(fleet.workers)}")
        cut = [w for w in fleet.workers if "CONNECTIONS" in w.faults]
        lost = [w.label() for w in cut if w.exit_code == 1]
        print(f"workers whose connections were cut: {len(cut)}, of which exited 1: {lost}")
        problems += budget_problems(trials, N_TRIALS, workers, ages, wall_started)
        problems += exit_problems(fleet)
        problems += sigterm_problems(fleet, trials)
        if driver.applied["SIGKILL"] == 0:
            problems.append("no SIGKILL landed inside a trial: the schedule did not test it")
        if driver.terminated == 0:
            problems.append("pg_terminate_backend found no connection of any worker to kill")
        elapsed = time.monotonic() - started
        print(f"chaos run took {elapsed:.0f} s")
        assert not problems, (
            f"chaos seed {SEED}: {len(problems)} problems\n"
            + "\n".join(problems)
            + "\nevents:\n"
            + "\n".join(fleet.events)
        )
    finally:
        admin.dispose()
        watch.delete()


# Members a packed worker admits one by one, each asked under the study's lock. Each victim
# is killed once a (seeded) few of its members show, so more are still to come; a kill
# lands at a random point of a member's admission, so two victims try it twice.
ADMIT_PACK = 24
VICTIMS = 2
ADMIT_GRACE_S = 4


def running_at_least(fleet: Fleet, worker: Worker, count: int) -> bool:
    return len(fleet.busy(fleet.watch.trials()).get(worker.index, [])) >= count


@pytest.mark.timeout(RUN_DEADLINE_S)
def test_a_packed_worker_killed_while_admitting_strands_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    started, wall_started = time.monotonic(), time.time()
    rng = random.Random(SEED)
    kill_points = [rng.randint(1, ADMIT_PACK // (VICTIMS + 1)) for _ in range(VICTIMS)]
    print(f"seed {SEED}: SIGKILL each victim once this many of its members run: {kill_points}")
    data = make_idx_dataset(tmp_path / "data", n_train=600, n_test=100)
    watch = StudyWatch(postgres_url, unique_name("admit"))
    sweep = write_chaos_sweep(
        data, tmp_path, watch, n_trials=ADMIT_PACK, pruner="none", grace_period=ADMIT_GRACE_S
    )
    fleet = Fleet(sweep, tmp_path, watch, started)
    problems: list[str] = []
    try:
        with reaped(fleet.procs):
            for kill_at in kill_points:
                victim = fleet.start(ADMIT_PACK, f"victim, killed at {kill_at} members")
                wait_until(
                    functools.partial(running_at_least, fleet, victim, kill_at),
                    f"{kill_at} members of {victim.label()}",
                    procs=[victim.proc],
                )
                victim.signalled = "SIGKILL"
                victim.proc.popen.send_signal(signal.SIGKILL)
                victim.exit_code = victim.proc.wait(timeout=60)
                running = [t for t in watch.trials() if t.state == TrialState.RUNNING]
                ages = heartbeat_ages(postgres_url, watch.name)
                fleet.log(
                    f"SIGKILL {victim.label()}: {len(running)} trials RUNNING, "
                    f"{sum(ages.get(t.number) is None for t in running)} without a heartbeat"
                )
            survivor = fleet.start(8, "survivor")
            wait_until(
                lambda: "regsweep worker" in survivor.proc.output(),
                "the survivor to join the study",
                procs=[survivor.proc],
            )
            # A few grace periods for the victim's members to go stale and be retried, and
            # time to train the whole budget (three packs of eight, a few seconds each).
            recovery_s = 5 * ADMIT_GRACE_S + 40
            joined = time.monotonic()
            try:
                survivor.exit_code = survivor.proc.wait(timeout=recovery_s)
                fleet.log(
                    f"survivor exited {survivor.exit_code}, {time.monotonic() - joined:.0f} s "
                    "after joining the study"
                )
            except AssertionError:
                problems.append(
                    f"the survivor did not finish the budget within {recovery_s} s of joining:\n"
                    f"{survivor.tail(4)}"
                )
                survivor.signalled = "SIGKILL"  # by the test: its exit says nothing
                survivor.proc.popen.kill()
                survivor.proc.wait(timeout=30)
        trials = watch.trials()
        ages = heartbeat_ages(postgres_url, watch.name)
        problems += budget_problems(trials, ADMIT_PACK, fleet.by_name(), ages, wall_started)
        problems += exit_problems(fleet)
        left = [t.number for t in trials if t.state == TrialState.RUNNING]
        if survivor.exit_code == 0 and left:
            problems.append(
                f"the survivor exited 0 (its budget reached) with trials {left} still RUNNING: "
                "it did not wait for them to be failed and retried"
            )
        print(f"run took {time.monotonic() - started:.0f} s")
        assert not problems, (
            f"{len(problems)} problems\n"
            + "\n".join(problems)
            + "\nevents:\n"
            + "\n".join(fleet.events)
        )
    finally:
        watch.delete()
