"""Trial overhead on a table: the trials' wall time against their training and evaluation.

python benchmarks/trial_overhead.py [--rounds 3] [--baseline REVISION]

Runs ``regsweep launch sweeps/breast_cancer.yaml`` as shipped (30 trials, SQLite, one
process; each run in a fresh process with a fresh database, the study named as in the
file, so every run samples and prunes alike) and reads from the stored trials:

- the trials' wall time: the sum over trials of ``datetime_complete - datetime_start``
  (from the ask that creates a trial to the tell that finishes it);
- their training and evaluation time: the sum over trials of ``epochs_run x
  epoch_seconds``, i.e. the engine's own clock (``time.perf_counter``) around each epoch's
  training pass over the training rows and evaluation pass over the validation rows.
  Everything else inside a trial is overhead: the sampler's suggestions, building the
  network and its optimizer, keeping the best weights, reports, pruning, attributes, tell.

Goal: the trials' wall time within 1.25x of their training and evaluation time. It also
counts, per trial, the SQL statements and commits sent to the database and the calls into
the RDB storage (calls it makes to itself not counted), and times the lifecycle's steps.
With ``--baseline``, that commit's ``src`` runs the same way, interleaved run by run.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib

SWEEP = "sweeps/breast_cancer.yaml"

# The steps timed in each run, by where they live in regsweep (the same in every version
# since the lifecycle became one module), as (module, owner, name, label).
STEPS = (
    ("regsweep.sweep.lifecycle", "Lifecycle", "take", "take: lock, recovery, ask, first beat"),
    ("regsweep.sweep.objective", None, "suggest_regularization", "sampling: suggest_*"),
    ("regsweep.engine.fit", None, "make_optimizer", "optimizer (first: imports)"),
    ("regsweep.engine.fit", None, "train_epoch", "training passes"),
    ("regsweep.engine.fit", None, "evaluate", "validation passes"),
    ("optuna.trial", "Trial", "report", "report"),
    ("optuna.trial", "Trial", "should_prune", "should_prune"),
    ("optuna.trial", "Trial", "set_user_attr", "user attributes"),
    ("regsweep.sweep.lifecycle", "Lifecycle", "tell", "tell"),
)


class Clock:
    """Exclusive wall time per step: a step's time leaves out the steps nested in it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._stack: list[list[float]] = []  # [started, nested seconds]

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                self._stack.pop()
                spent = time.perf_counter() - frame[0]
                self.seconds[label] += spent - frame[1]
                if self._stack:
                    self._stack[-1][1] += spent

        return timed


def count_storage(storage: Any, counts: collections.Counter[str]) -> None:
    """Count what reaches the database: SQL statements, commits, and calls into the RDB
    storage from outside it (the storage calling its own methods is not counted)."""
    import sqlalchemy

    sqlalchemy.event.listen(
        storage.engine, "before_cursor_execute", lambda *a: counts.update(["statements"])
    )
    sqlalchemy.event.listen(storage.engine, "commit", lambda *a: counts.update(["commits"]))
    depth = threading.local()

    def counted(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            level = getattr(depth, "level", 0)
            if level == 0 and threading.current_thread() is threading.main_thread():
                counts["storage calls"] += 1
            depth.level = level + 1
            try:
                return method(*args, **kwargs)
            finally:
                depth.level = level

        return call

    for name in dir(type(storage)):
        if name.startswith("__") or isinstance(getattr(type(storage), name, None), property):
            continue
        attribute = getattr(storage, name, None)
        if callable(attribute) and getattr(attribute, "__self__", None) is storage:
            setattr(storage, name, counted(attribute))


def child(sweep: str) -> None:
    """One launch of ``sweep`` in this process; prints its figures as one JSON line."""
    import importlib

    import optuna
    from rich.console import Console

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import regsweep.sweep.launch as launching
    from regsweep.config.loading import load_sweep

    clock = Clock()
    for module_name, owner_name, name, label in STEPS:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        setattr(owner, name, clock.wrap(getattr(owner, name), label))
    counts: collections.Counter[str] = collections.Counter()
    build_storage = launching.build_storage

    def counted_storage(*args: Any, **kwargs: Any) -> Any:
        storage = build_storage(*args, **kwargs)
        count_storage(storage, counts)
        return storage

    launching.build_storage = counted_storage
    with tempfile.TemporaryDirectory() as folder:
        config = load_sweep(
            benchlib.REPO / sweep, flags={"study.storage": f"sqlite:///{folder}/study.db"}
        )
        os.chdir(benchlib.REPO)  # the sweep's data path is relative to the repository
        started = time.perf_counter()
        study, _ = launching.launch(config, console=Console(file=io.StringIO()))
        launch_s = time.perf_counter() - started
        trials = study.get_trials()
    assert all(t.datetime_complete and t.datetime_start for t in trials)
    n = len(trials)
    result = {
        "launch_s": launch_s,
        "trials": n,
        "epochs": sum(t.user_attrs["epochs_run"] for t in trials),
        "trial_wall_s": sum(
            (t.datetime_complete - t.datetime_start).total_seconds()  # type: ignore[operator]
            for t in trials
        ),
        "train_eval_s": sum(
            t.user_attrs["epochs_run"] * t.user_attrs["epoch_seconds"] for t in trials
        ),
        "per_trial": {k: v / n for k, v in counts.items()},
        "steps_ms": {k: 1000 * v / n for k, v in clock.seconds.items()},
    }
    print(json.dumps(result), flush=True)


def run_child(source: Path, sweep: str) -> dict[str, Any]:
    env = {**os.environ, benchlib.SOURCE_ENV: str(source), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--sweep", sweep],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"error: the run with {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each version")
    parser.add_argument("--baseline", help="a commit to run side by side, e.g. main")
    parser.add_argument("--sweep", default=SWEEP)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.sweep)
        return
    with tempfile.TemporaryDirectory() as folder:
        versions = {}
        if args.baseline:
            name = f"{args.baseline} ({benchlib.short_commit(args.baseline)})"
            versions[name] = benchlib.baseline_source(args.baseline, Path(folder))
        versions[f"this commit ({benchlib.git_commit()})"] = benchlib.REPO / "src"
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
        for _ in range(args.rounds):
            for name, source in versions.items():  # interleaved: A B A B ...
                runs[name].append(run_child(source, args.sweep))
                print(name, json.dumps(runs[name][-1]), file=sys.stderr)
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()[0]
    body = report(runs, args, elapsed, load_before, load_after)
    benchlib.write_section(
        "trial_overhead",
        "Trial overhead on a table: trials' wall time vs their training and evaluation",
        f"python benchmarks/trial_overhead.py --rounds {args.rounds}"
        + (f" --baseline {args.baseline}" if args.baseline else ""),
        body,
    )


def report(
    runs: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    elapsed: float,
    load_before: float,
    load_after: float,
) -> str:
    def med(name: str, key: str, sub: str | None = None) -> float:
        """The median over runs of a figure (``sub``: a key inside it, 0 where absent)."""
        return statistics.median(r[key].get(sub, 0.0) if sub else r[key] for r in runs[name])

    rows = []
    for name in runs:
        ratios = [r["trial_wall_s"] / r["train_eval_s"] for r in runs[name]]
        rows.append(
            [
                name,
                f"{med(name, 'launch_s'):.1f}",
                f"{med(name, 'epochs'):.0f}",
                f"{med(name, 'trial_wall_s'):.2f}",
                f"{med(name, 'train_eval_s'):.2f}",
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                f"{med(name, 'per_trial', 'statements'):.0f}",
                f"{med(name, 'per_trial', 'commits'):.1f}",
                f"{med(name, 'per_trial', 'storage calls'):.1f}",
            ]
        )
    labels = [label for *_, label in STEPS]
    step_rows = [
        [label, *(f"{med(name, 'steps_ms', label):.1f}" for name in runs)] for label in labels
    ]
    current = list(runs)[-1]
    ratio = statistics.median(r["trial_wall_s"] / r["train_eval_s"] for r in runs[current])
    verdict = f"{ratio:.2f}x ({'met' if ratio <= 1.25 else 'NOT met'})"
    return (
        f"`{args.sweep}` as shipped (30 trials, SQLite, one process), {args.rounds} runs of each "
        "version, each a fresh process and database, interleaved; medians (range of the "
        f"ratio in brackets). Load average {load_before:.2f} at the start, {load_after:.2f} at "
        f"the end (whole run {elapsed:.0f} s). Trials' wall: sum of complete - start; "
        "training + evaluation: sum of epochs_run x epoch_seconds (the engine's clock around "
        "each epoch's training and validation passes); launch: the whole `launch` call, "
        "imports after the first included. SQL statements, commits (those that end a read "
        "included) and calls into the RDB storage (not its calls to itself) are per trial, "
        "whole run (study creation and reads included).\n\n"
        + benchlib.table(
            [
                "code",
                "launch s",
                "epochs",
                "trials' wall s",
                "training + evaluation s",
                "wall / (training + evaluation)",
                "SQL / trial",
                "commits / trial",
                "storage calls / trial",
            ],
            rows,
        )
        + "\n\nWhere a trial's time goes, ms per trial (exclusive: a step's time leaves out "
        "the steps inside it; take starts before the trial's start time, with the study lock "
        "and the stale-trial check):\n\n"
        + benchlib.table(["step", *runs], step_rows)
        + f"\n\nGoal: trials' wall time <= 1.25x their training and evaluation time: {verdict}."
    )


if __name__ == "__main__":
    main()
