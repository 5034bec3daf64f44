"""Seconds per trial spent outside training: budget lock, ask, sampling, reports, tell.

python benchmarks/orchestration.py [--trials 10] [--rounds 1] [--baseline REVISION]
    [--postgres URL]

The real study loop (``solo.run_trials``, with the budget lock, heartbeats and stale-
trial checks) runs a tiny objective that does everything a trial does except training:
suggest the five regularizers (TPE, multivariate, as in sweeps/mnist.yaml), report 20
epochs with a Hyperband pruner, record the user attributes, return a value. The study is
first filled with finished trials (params, intermediate values, states) to 10, 1,000 and
5,000, and ``--trials`` more are timed at each size, on SQLite and on PostgreSQL, in
``--rounds`` blocks. Each version of regsweep runs in a child process of its own; with
``--baseline``, that commit's ``src`` is timed too, block by block alternately with this
checkout's. Goal: < 20 ms per trial at 1,000 trials on SQLite, < 40 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from regsweep.config.loading import load_sweep
from regsweep.config.schema import SweepConfig
from regsweep.storage.rdb import build_storage
from regsweep.sweep.solo import run_trials
from regsweep.sweep.space import suggest_regularization
from regsweep.sweep.study import build_pruner, build_sampler, heartbeat_settings, open_study

SIZES = (10, 1_000, 5_000)
EPOCHS = 20
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Timed:
    """The objective without training; it keeps the time spent sampling and reporting."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.sampling = 0.0
        self.reporting = 0.0
        self.rng = np.random.default_rng(0)

    def __call__(self, trial: optuna.Trial) -> float:
        started = time.perf_counter()
        suggest_regularization(trial, self.config.search_space)
        self.sampling += time.perf_counter() - started
        started = time.perf_counter()
        losses = list(0.3 + np.sort(self.rng.random(EPOCHS))[::-1] * 0.1)
        pruned = False
        for epoch, loss in enumerate(losses, 1):
            trial.report(float(loss), epoch)
            if trial.should_prune():
                losses, pruned = losses[:epoch], True
                break
        for key, value in {
            "seed": 1,
            "train_loss": losses,
            "val_loss": losses,
            "val_accuracy": [0.9] * len(losses),
            "best_epoch": len(losses),
            "best_val_accuracy": 0.9,
            "epochs_run": len(losses),
            "stopped_early": False,
            "epoch_seconds": 0.1,
            "weight_sparsity": 0.0,
        }.items():
            trial.set_user_attr(key, value)
        self.reporting += time.perf_counter() - started
        if pruned:
            raise optuna.TrialPruned()
        return float(min(losses))


def fill(study: optuna.Study, n: int, distributions: dict, rng: np.random.Generator) -> None:
    """Add finished trials until the study holds ``n``: the history a sampler reads."""
    missing = n - len(study.get_trials(deepcopy=False))
    trials = []
    for _ in range(max(0, missing)):
        epochs = int(rng.choice([1, 3, 9, EPOCHS]))
        curve = {e: float(0.3 + rng.random() * 0.2 / e) for e in range(1, epochs + 1)}
        params = {
            "dropout": float(rng.uniform(0, 0.5)),
            "weight_decay": float(math.exp(rng.uniform(math.log(1e-7), math.log(1e-3)))),
            "l1": float(math.exp(rng.uniform(math.log(1e-8), math.log(1e-4)))),
            "batch_norm": bool(rng.integers(2)),
            "patience": int(rng.integers(2, 9)),
        }
        complete = epochs == EPOCHS
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=min(curve.values()) if complete else None,
                intermediate_values=curve,
                state=TrialState.COMPLETE if complete else TrialState.PRUNED,
            )
        )
    study.add_trials(trials)


def distributions_of(config: SweepConfig) -> dict:
    study = optuna.create_study()
    trial = study.ask()
    suggest_regularization(trial, config.search_space)
    return dict(trial.distributions)


def warm_up(config: SweepConfig) -> None:
    """Run a few trials in memory first: the first ones pay for imports, not orchestration."""
    study = optuna.create_study(sampler=build_sampler(config), pruner=build_pruner(config))
    run_trials(study, Timed(config), n_trials=12)


class Worker:
    """One version of regsweep in a child process, answering commands one line at a time.

    The study it works on stays open between commands, so that two versions can be timed
    alternately, block by block, on studies of the same size.
    """

    def __init__(self, source: Path, label: str) -> None:
        self.label = label
        env = {**os.environ, benchlib.SOURCE_ENV: str(source), "PYTHONWARNINGS": "ignore"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"error: the {self.label} worker died during {command}")
        return dict(json.loads(line))

    def close(self) -> None:
        self.ask(op="exit")
        self.process.wait(timeout=60)


def serve() -> None:
    """The child's loop: open a study, fill it, time trials on it, delete it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_sweep(benchlib.REPO / "sweeps/mnist.yaml")
    warm_up(config)
    study: optuna.Study | None = None
    storage: Any = None
    counts: collections.Counter[str] = collections.Counter()
    distributions = distributions_of(config)
    rng = np.random.default_rng(0)
    for line in sys.stdin:
        command = json.loads(line)
        reply: dict[str, Any] = {}
        if command["op"] == "open":
            config = config.model_copy(deep=True)
            config.study.name = f"bench-orchestration-{uuid.uuid4().hex[:8]}"
            config.study.storage = command["url"]
            storage = build_storage(command["url"], heartbeat_settings(config.study))
            sqlalchemy.event.listen(
                storage.engine, "before_cursor_execute", lambda *a: counts.update(["sql"])
            )
            sqlalchemy.event.listen(storage.engine, "commit", lambda *a: counts.update(["commits"]))
            study = open_study(
                config, storage, sampler=build_sampler(config), pruner=build_pruner(config)
            )
        elif command["op"] == "fill":
            assert study is not None
            fill(study, command["size"], distributions, rng)
            # Two untimed trials: a worker reads a study's history once, then keeps it
            # cached; that start-up is per worker, not per trial.
            run_trials(
                study,
                Timed(config),
                n_trials=len(study.get_trials(deepcopy=False)) + 2,
                storage=storage,
            )
        elif command["op"] == "time":
            assert study is not None
            n = command["trials"]
            objective = Timed(config)
            counts.clear()
            started = time.perf_counter()
            run_trials(
                study,
                objective,
                n_trials=len(study.get_trials(deepcopy=False)) + n,
                storage=storage,
            )
            total = time.perf_counter() - started
            reply = {
                "ms": 1000 * total / n,
                "sampling": 1000 * objective.sampling / n,
                "reporting": 1000 * objective.reporting / n,
                "sql": counts["sql"] / n,
                "commits": counts["commits"] / n,
            }
        elif command["op"] == "close":
            assert study is not None
            optuna.delete_study(study_name=study.study_name, storage=storage)
            storage.engine.dispose()
            study = None
        elif command["op"] == "exit":
            print(json.dumps(reply), flush=True)
            return
        print(json.dumps(reply), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials timed per block")
    parser.add_argument("--rounds", type=int, default=1, help="timed blocks per size and code")
    parser.add_argument("--baseline", help="a commit to time side by side, e.g. main")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results: dict[tuple[str, int, str], list[dict[str, Any]]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        sources = {}
        if args.baseline:
            name = f"{args.baseline} ({benchlib.short_commit(args.baseline)})"
            sources[name] = benchlib.baseline_source(args.baseline, Path(folder))
        sources[f"this commit ({benchlib.git_commit()})"] = benchlib.REPO / "src"
        workers = [Worker(source, label) for label, source in sources.items()]
        try:
            for backend in ("SQLite", "PostgreSQL"):
                for index, worker in enumerate(workers):
                    url = args.postgres
                    if backend == "SQLite":
                        url = f"sqlite:///{Path(folder) / f'bench-{index}.db'}"
                    worker.ask(op="open", url=url)
                for size in args.sizes:
                    for worker in workers:
                        worker.ask(op="fill", size=size)
                    for _ in range(args.rounds):
                        for worker in workers:  # interleaved: A B A B ...
                            reply = worker.ask(op="time", trials=args.trials)
                            results[(backend, size, worker.label)].append(reply)
                            print(backend, size, worker.label, reply, file=sys.stderr)
                for worker in workers:
                    worker.ask(op="close")
        finally:
            for worker in workers:
                worker.close()
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    write(results, [w.label for w in workers], args, elapsed, load_before, load_after)


def write(
    results: dict[tuple[str, int, str], list[dict[str, Any]]],
    labels: list[str],
    args: argparse.Namespace,
    elapsed: float,
    load_before: float,
    load_after: float,
) -> None:
    rows = []
    at_1000: dict[tuple[str, str], float] = {}
    for (backend, size, label), replies in results.items():

        def med(key: str, replies: list[dict[str, Any]] = replies) -> float:
            return statistics.median(r[key] for r in replies)

        total, sampling, reporting = med("ms"), med("sampling"), med("reporting")
        if size == 1_000:
            at_1000[(backend, label)] = total
        rows.append(
            [
                backend,
                f"{size:,}",
                label,
                f"{total:.1f}",
                f"{sampling:.1f}",
                f"{reporting:.1f}",
                f"{total - sampling - reporting:.1f}",
                f"{med('sql'):.0f}",
                f"{med('commits'):.1f}",
            ]
        )
    goals = {"SQLite": 20.0, "PostgreSQL": 40.0}
    current = labels[-1]
    verdicts = []
    for backend, goal in goals.items():
        value = at_1000[(backend, current)]
        line = f"{backend} {value:.1f} ms (goal < {goal:g}: {'met' if value < goal else 'NOT met'})"
        if len(labels) > 1:
            line += f", {labels[0]} {at_1000[(backend, labels[0])]:.1f} ms"
        verdicts.append(line)
    body = (
        f"Milliseconds per trial outside training, {args.trials} trials timed per block after "
        "the study was filled to each size (and 2 untimed trials warmed the worker's cache), "
        f"{args.rounds} block(s) per size and code, the codes' blocks interleaved (medians); "
        "sampler TPE (multivariate, 10 startup trials), "
        f"pruner Hyperband, {EPOCHS} reports per trial unless pruned; heartbeats on. "
        "'sampling' is the five suggest calls, 'reports + attrs' the reports, pruning and "
        "user attributes inside the objective, 'rest' the budget lock and count, ask, "
        "stale-trial check, heartbeat and tell (with the attribute writes a worker batches "
        "until the tell). SQL statements and commits (those that end a read included) are per "
        "trial. Load average "
        f"{load_before:.2f} at the start, {load_after:.2f} at the end (whole run {elapsed:.0f} "
        "s).\n\n"
        + benchlib.table(
            [
                "storage",
                "trials in study",
                "code",
                "ms / trial",
                "sampling",
                "reports + attrs",
                "rest",
                "SQL / trial",
                "commits / trial",
            ],
            rows,
        )
        + "\n\nAt 1,000 trials: "
        + "; ".join(verdicts)
        + "."
    )
    command = f"python benchmarks/orchestration.py --trials {args.trials} --rounds {args.rounds}"
    if args.sizes != list(SIZES):
        command += " --sizes " + " ".join(map(str, args.sizes))
    if args.baseline:
        command += f" --baseline {args.baseline}"
    benchlib.write_section("orchestration", "Orchestration overhead per trial", command, body)


if __name__ == "__main__":
    main()
