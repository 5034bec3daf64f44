"""Trials per hour with 1 and 2 worker processes sharing one study, SQLite and PostgreSQL.

python benchmarks/workers.py [--trials 16] [--epochs 4] [--postgres URL]

Each worker is its own process running ``regsweep.sweep.launch`` on the same storage and study
(the budget is counted across workers under the study lock), with one PyTorch thread,
training sweeps/mnist.yaml's network on the real MNIST test set (8,000 / 2,000), no
pruner. Throughput is taken from the trials' own timestamps (first start to last
finish), so process start-up and data loading are left out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import benchlib
import optuna

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WORKER = """
import sys
sys.path.insert(0, {bench!r})
import benchlib
config = benchlib.t10k_sweep({name!r}, {url!r}, study__pruner={{"name": "none"}},
    study__n_trials={trials}, train__max_epochs={epochs}, study__pack={pack})
benchlib.quiet_launch(config)
"""


def run(url: str, workers: int, args: argparse.Namespace) -> tuple[float, int]:
    """Trials per hour and trials finished, for ``workers`` processes on ``url``."""
    name = f"bench-workers-{uuid.uuid4().hex[:8]}"
    code = WORKER.format(
        bench=str(Path(__file__).parent),
        name=name,
        url=url,
        trials=args.trials,
        epochs=args.epochs,
        pack=args.pack,
    )
    procs = []
    for i in range(workers):
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
        if i == 0:
            time.sleep(1.0)  # the first worker creates the study; the second joins it
    for proc in procs:
        if proc.wait() != 0:
            sys.exit(f"error: a worker exited with {proc.returncode}")
    study = optuna.load_study(study_name=name, storage=url)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    start = min(t.datetime_start for t in trials if t.datetime_start is not None)
    end = max(t.datetime_complete for t in trials if t.datetime_complete is not None)
    optuna.delete_study(study_name=name, storage=url)
    return len(trials) * 3600 / (end - start).total_seconds(), len(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pack", type=int, default=1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        backends = {
            "SQLite": f"sqlite:///{Path(folder) / 'workers.db'}",
            "PostgreSQL": args.postgres,
        }
        for backend, url in backends.items():
            single = None
            for workers in (1, 2):
                per_hour, n = run(url, workers, args)
                single = single or per_hour
                rows.append(
                    [backend, str(workers), str(n), f"{per_hour:,.0f}", f"{per_hour / single:.2f}x"]
                )
    body = (
        f"{args.trials} trials of {args.epochs} epochs (no pruner), pack {args.pack}, one "
        "PyTorch thread per worker; real MNIST test set 8,000 / 2,000. The machine has 2 "
        "cores shared with other users, so 2 workers can at best double the rate, and "
        "less while others are busy.\n\n"
        + benchlib.table(["storage", "workers", "trials", "trials / hour", "vs 1 worker"], rows)
    )
    benchlib.write_section(
        "workers",
        "Workers: 1 vs 2 processes on one study",
        f"python benchmarks/workers.py --trials {args.trials} --epochs {args.epochs} "
        f"--pack {args.pack}",
        body,
    )


if __name__ == "__main__":
    main()
