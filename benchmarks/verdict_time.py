"""Verdict wall time: ablate until decided (the default cap) against the seeds design it replaced.

python benchmarks/verdict_time.py [--baseline-commit 5b55b95] [--rounds 3]

``sweeps/breast_cancer.yaml``'s 30-trial sweep, once; then, on copies of its database,
interleaved over ``--rounds``: ``regsweep ablate`` as shipped (repetitions in rounds of
5 until every effect is decided, at most 30, one pack per repetition, both cores), the
same run to its cap (``--repeats 30``, what it costs when no look stops it), and
the ablate of the commit it replaced (``--seeds 3`` and ``--seeds 5``: seeds on the
sweep's own split, one pack per seed), run from that commit's source (``git archive``
into a temporary folder; the installed packages are shared). Each is the whole command as a user
runs it, from process start to exit. The sweep is made by the baseline's ``launch``
(the older code cannot read a study this version created; this version reads both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

SWEEP = benchlib.REPO / "sweeps" / "breast_cancer.yaml"


def regsweep(source: Path, *args: str, cwd: Path) -> tuple[float, str]:
    """Run ``regsweep ARGS`` with the package in ``source``; (seconds, output)."""
    env = {**os.environ, "PYTHONPATH": str(source / "src"), "COLUMNS": "200"}
    env.pop("REGSWEEP_STORAGE", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "regsweep", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: regsweep {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-commit", default="5b55b95", help="the commit replaced")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        baseline = work / "baseline"
        baseline.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline_commit, "src"],
            cwd=benchlib.REPO,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        # The sweep file names its CSV relative to the repository: run from there.
        shutil.copytree(benchlib.REPO / "sweeps", work / "sweeps")
        db = work / "sweep.db"
        regsweep(baseline, "launch", str(SWEEP), "--storage", f"sqlite:///{db}", cwd=work)
        cases = {
            "new": ("ablate", "repetitions until decided (cap 30)", benchlib.REPO, []),
            "cap": ("ablate", "the whole cap: --repeats 30", benchlib.REPO, ["30"]),
            "seeds3": ("ablate", "seeds on the validation rows, --seeds 3", baseline, ["3"]),
            "seeds5": ("ablate", "seeds on the validation rows, --seeds 5", baseline, ["5"]),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        stops: list[str] = []
        for round_ in range(args.rounds):
            for name, (command, _, source, seeds) in cases.items():
                copy = work / f"{name}-{round_}.db"
                shutil.copy(db, copy)
                flag = "--repeats" if source == benchlib.REPO else "--seeds"
                extra = [flag, *seeds] if seeds else []
                seconds, output = regsweep(
                    source, command, str(SWEEP), "--storage", f"sqlite:///{copy}", *extra, cwd=work
                )
                times[name].append(seconds)
                if name == "new":
                    looks = [line for line in output.splitlines() if line.startswith("look ")]
                    stops.append(looks[-1] if looks else "?")
    rows = [
        [
            what,
            f"{statistics.median(times[name]):.1f}",
            f"{min(times[name]):.1f} to {max(times[name]):.1f}",
        ]
        for name, (_, what, _, _) in cases.items()
    ]
    goal = max(statistics.median(times["new"]), statistics.median(times["cap"])) <= 120
    body = (
        f"sweeps/breast_cancer.yaml (30 trials, made once by the baseline); each command whole, "
        f"process start to exit, default workers (both cores); medians of {args.rounds} "
        "interleaved rounds. Where the new ablate stopped: "
        + "; ".join(sorted(set(stops)))
        + ".\n\nGoal (the new ablate within 2 minutes with the default cap, even run to the cap): "
        + f"**{'met' if goal else 'not met'}**.\n\n"
        + benchlib.table(["ablate", "wall s (median)", "range"], rows)
    )
    benchlib.write_section(
        "verdict_time",
        "Verdict wall time: until decided vs the seeds design",
        f"python benchmarks/verdict_time.py --baseline-commit {args.baseline_commit} "
        f"--rounds {args.rounds}",
        body,
    )


if __name__ == "__main__":
    main()
