"""Report at scale: ``regsweep report`` on a study of 3,000 finished trials.

python benchmarks/report_scale.py [--trials 3000]

The study is built directly (``optuna.trial.create_trial`` + ``study.add_trials``) with
what a real sweep stores: the five regularizers' params and distributions of
sweeps/mnist.yaml, 20 epochs of intermediate values, per-epoch train/validation loss and
accuracy curves and every user attribute; 70% complete, 25% pruned, 5% failed. Timed:
the whole ``regsweep report`` command as a user runs it (a fresh process: imports, loading
the study from SQLite, every section, writing the HTML). Goal: within 30 s.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

EPOCHS = 20


def build(storage: str, n: int) -> None:
    from regsweep.config.loading import load_sweep
    from regsweep.sweep.study import CONFIG_ATTR, stored_config

    config = load_sweep(
        benchlib.REPO / "sweeps/mnist.yaml",
        flags={"study.name": "scale", "study.storage": storage, "train.max_epochs": EPOCHS},
    )
    study = optuna.create_study(study_name="scale", storage=storage)
    study.set_user_attr(CONFIG_ATTR, stored_config(config))
    rng = np.random.default_rng(0)
    distributions = {
        "dropout": FloatDistribution(0.0, 0.5),
        "weight_decay": FloatDistribution(1e-7, 1e-3, log=True),
        "l1": FloatDistribution(1e-8, 1e-4, log=True),
        "batch_norm": CategoricalDistribution([False, True]),
        "patience": IntDistribution(2, 8, step=2),
    }
    trials = []
    for number in range(n):
        params = {
            "dropout": float(rng.uniform(0, 0.5)),
            "weight_decay": float(10 ** rng.uniform(-7, -3)),
            "l1": float(10 ** rng.uniform(-8, -4)),
            "batch_norm": bool(rng.integers(2)),
            "patience": int(rng.choice([2, 4, 6, 8])),
        }
        draw = rng.uniform()
        state = (
            TrialState.COMPLETE
            if draw < 0.7
            else TrialState.PRUNED
            if draw < 0.95
            else TrialState.FAIL
        )
        epochs = EPOCHS if state == TrialState.COMPLETE else int(rng.integers(1, 8))
        floor = 0.08 + 0.1 * abs(params["dropout"] - 0.2) + (0 if params["batch_norm"] else 0.02)
        val = [floor + 0.5 * math.exp(-e / 3) + float(rng.normal(0, 0.005)) for e in range(epochs)]
        train = [v - 0.01 * e for e, v in enumerate(val)]
        best_epoch = int(np.argmin(val)) + 1
        attrs = {
            "train_loss": train,
            "val_loss": val,
            "val_accuracy": [1 - v / 3 for v in val],
            "best_epoch": best_epoch,
            "best_val_accuracy": 1 - min(val) / 3,
            "epochs_run": epochs,
            "stopped_early": state == TrialState.COMPLETE and epochs < EPOCHS,
            "epoch_seconds": 0.5,
            "weight_sparsity": min(1.0, params["l1"] * 1e3),
            "seed": number,
            "batch_order": {"shuffle_seed": number, "skip_epochs": 0},
            "worker": "bench:1",
        }
        trials.append(
            create_trial(
                params=params,
                distributions=distributions,
                value=min(val) if state == TrialState.COMPLETE else None,
                state=state,
                intermediate_values=dict(enumerate(val, start=1)),
                user_attrs=attrs,
            )
        )
    study.add_trials(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'scale.db'}"
        started = time.perf_counter()
        build(storage, args.trials)
        built = time.perf_counter() - started
        report = Path(folder) / "report.html"
        command = [sys.executable, "-m", "regsweep", "report", "--storage", storage,
                   "--study", "scale", "-o", str(report)]  # fmt: skip
        env = {"PYTHONPATH": str(benchlib.REPO / "src"), "PATH": "/usr/bin:/bin"}
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(done.stderr)
        size = report.stat().st_size / 2**20
    body = (
        f"A study of {args.trials} finished trials (70% complete, 25% pruned, 5% failed; "
        f"{EPOCHS} epochs of curves each), built in {built:.0f} s with "
        "`optuna.trial.create_trial` + `study.add_trials`, in SQLite.\n\n"
        + benchlib.table(
            ["trials", "`regsweep report` wall s", "report size MiB", "goal"],
            [
                [
                    str(args.trials),
                    f"{seconds:.1f}",
                    f"{size:.1f}",
                    f"<= 30 s: {'met' if seconds <= 30 else 'NOT met'}",
                ]
            ],
        )
        + "\n\nThe wall time is the whole command in a fresh process (imports, loading the "
        "study, every section, writing the file). Importances use PED-ANOVA, whose cost "
        "is linear in the trials (fANOVA's random forest was what grew); the learning "
        "curves draw every trial, as one trace per state."
    )
    benchlib.write_section(
        "report_scale",
        "Report at scale: 3,000 trials",
        f"python benchmarks/report_scale.py --trials {args.trials}",
        body,
    )


if __name__ == "__main__":
    main()
