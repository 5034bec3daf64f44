"""Seconds per trial spent outside training: budget lock, ask, sampling, reports, tell.

python benchmarks/orchestration.py [--trials 20] [--postgres URL]

The real study loop (``runner.run_trials``, with the budget lock, heartbeats and stale-
trial checks) runs a tiny objective that does everything a trial does except training:
suggest the five regularizers (TPE, multivariate, as in sweeps/mnist.yaml), report 20
epochs with a Hyperband pruner, record the user attributes, return a value. The study is
first filled with finished trials (params, intermediate values, states) to 10, 1,000 and
5,000, and ``--trials`` more are timed at each size, on SQLite and on PostgreSQL.
Goal: < 20 ms per trial at 1,000 trials.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import uuid
from pathlib import Path

import benchlib
import numpy as np
import optuna
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


def measure(url: str, n_timed: int, config: SweepConfig) -> list[tuple[int, float, float, float]]:
    """For each size: (size, ms per trial in all, of which sampling, of which reporting)."""
    config = config.model_copy(deep=True)
    config.study.name = f"bench-orchestration-{uuid.uuid4().hex[:8]}"
    config.study.storage = url
    storage = build_storage(url, heartbeat_settings(config.study))
    study = open_study(config, storage, sampler=build_sampler(config), pruner=build_pruner(config))
    distributions = distributions_of(config)
    rng = np.random.default_rng(0)
    out = []
    try:
        for size in SIZES:
            fill(study, size, distributions, rng)
            # Two untimed trials first: a worker reads a study's history once, then keeps
            # it cached; that start-up is per worker, not per trial.
            run_trials(
                study,
                Timed(config),
                n_trials=len(study.get_trials(deepcopy=False)) + 2,
                storage=storage,
            )
            objective = Timed(config)
            started = time.perf_counter()
            run_trials(
                study,
                objective,
                n_trials=len(study.get_trials(deepcopy=False)) + n_timed,
                storage=storage,
            )
            total = time.perf_counter() - started
            ms = 1000 / n_timed
            out.append((size, total * ms, objective.sampling * ms, objective.reporting * ms))
    finally:
        optuna.delete_study(study_name=config.study_name, storage=storage)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials timed at each size")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_sweep(benchlib.REPO / "sweeps/mnist.yaml")
    rows = []
    warm_up(config)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        backends = {"SQLite": f"sqlite:///{Path(folder) / 'bench.db'}", "PostgreSQL": args.postgres}
        for backend, url in backends.items():
            for size, total, sampling, reporting in measure(url, args.trials, config):
                rows.append(
                    [
                        backend,
                        f"{size:,}",
                        f"{total:.1f}",
                        f"{sampling:.1f}",
                        f"{reporting:.1f}",
                        f"{total - sampling - reporting:.1f}",
                    ]
                )
    elapsed = time.perf_counter() - started
    at_1000 = {r[0]: float(r[2]) for r in rows if r[1] == "1,000"}
    verdict = ", ".join(
        f"{b} {v:.1f} ms ({'met' if v < 20 else 'NOT met'})" for b, v in at_1000.items()
    )
    body = (
        f"Milliseconds per trial outside training, {args.trials} trials timed after the "
        "study was filled to each size (and 2 untimed trials warmed the worker's cache); "
        "sampler TPE (multivariate, 10 startup trials), "
        f"pruner Hyperband, {EPOCHS} reports per trial unless pruned; heartbeats on "
        f"(whole run {elapsed:.0f} s). 'rest' is the budget lock and count, ask, "
        f"stale-trial check, heartbeat and tell.\n\n"
        + benchlib.table(
            ["storage", "trials in study", "ms / trial", "sampling", "reports + attrs", "rest"],
            rows,
        )
        + f"\n\nGoal: < 20 ms per trial at 1,000 trials: {verdict}."
    )
    benchlib.write_section(
        "orchestration",
        "Orchestration overhead per trial",
        f"python benchmarks/orchestration.py --trials {args.trials}",
        body,
    )


if __name__ == "__main__":
    main()
