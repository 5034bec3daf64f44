"""Shared by the benchmarks: the real MNIST images, the machine, timing, BENCHMARKS.md.

Every benchmark is a script (``python benchmarks/NAME.py``) that prints a markdown table
and replaces its own section of BENCHMARKS.md at the repository root.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna

if TYPE_CHECKING:
    from regsweep.config.schema import SweepConfig

# As in the CLI: heartbeats and the retry callback are "experimental" in Optuna, and a
# benchmark's output should show its figures, not that warning once per study.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
# The regsweep source a benchmark imports: this checkout's, or another commit's (a side-by-side
# benchmark runs its baseline in a child process with this set, see ``baseline_source``).
SOURCE_ENV = "REGSWEEP_BENCH_SRC"
SRC = Path(os.environ.get(SOURCE_ENV, REPO / "src"))
MNIST_T10K = Path(os.environ.get("REGSWEEP_MNIST_T10K", REPO.parent / "shared/data/mnist-t10k"))
IMAGES = MNIST_T10K / "t10k-images-idx3-ubyte.gz"
LABELS = MNIST_T10K / "t10k-labels-idx1-ubyte.gz"

sys.path.insert(0, str(SRC))


def baseline_source(revision: str, folder: Path) -> Path:
    """The ``src`` folder of commit ``revision`` of this repository, unpacked in ``folder``.

    A side-by-side benchmark runs it in a child process (``SOURCE_ENV``), interleaved with
    this checkout's code, so that the load of a shared machine falls on both alike.
    """
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def short_commit(revision: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", revision],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def mnist_t10k() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test set: 10,000 images (uint8, 28 x 28) and labels."""
    from regsweep.data.idx import read_idx

    if not (IMAGES.is_file() and LABELS.is_file()):
        sys.exit(f"error: MNIST test set not found in {MNIST_T10K} (set REGSWEEP_MNIST_T10K)")
    return read_idx(IMAGES), read_idx(LABELS)


def repeated(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images: the 10,000 real test images repeated (for a full-size epoch)."""
    images, labels = mnist_t10k()
    reps = -(-n // len(images))
    return np.concatenate([images] * reps)[:n], np.concatenate([labels] * reps)[:n]


def quiet_launch(config: SweepConfig) -> tuple[object, float]:
    """Run ``regsweep.sweep.launch`` without its progress display; returns (study, seconds)."""
    import io

    from rich.console import Console

    from regsweep.sweep.launch import launch

    started = time.perf_counter()
    study, _ = launch(config, console=Console(file=io.StringIO()))
    return study, time.perf_counter() - started


def machine() -> str:
    """The CPU, its cores, and how busy the machine was (other users share it)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}; "
        f"load average {load:.2f} at the start (machine shared with other users)"
    )


def interleaved(
    cases: dict[str, Callable[[], float | None]], repeats: int
) -> dict[str, list[float]]:
    """Run every case once per round, A B C A B C ..., so load changes hit all alike.

    A case returns its own measured seconds, or None to be timed as a whole call.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            started = time.perf_counter()
            measured = case()
            times[name].append(measured if measured is not None else time.perf_counter() - started)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def git_commit() -> str:
    """HEAD's short hash, with "+ changes" when src/ or benchmarks/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "benchmarks"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    # A figure measured with uncommitted code must not claim to be HEAD's.
    return f"{head} + uncommitted changes" if dirty else head


def write_section(name: str, title: str, command: str, body: str) -> None:
    """Print ``body`` and replace section ``name`` of BENCHMARKS.md with it."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- BEGIN {name} -->\n## {title}\n\n"
        f"Command: `{command}` · {stamp} · commit {git_commit()}\n\n"
        f"Machine: {machine()}\n\n{body.strip()}\n<!-- END {name} -->"
    )
    print(section)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else _HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    BENCHMARKS_MD.write_text(text)


_HEADER = """# Benchmarks

Each section is written by its script in `benchmarks/` (`make bench` runs them all) and
names the exact command, the machine and the date. Everything compared in a section was
measured in one run, on the same data, interleaved (A B A B ...), and is reported as
medians and ratios; absolute times hold only for the machine named.
"""


def t10k_sweep(name: str, storage: str, **sets: object) -> SweepConfig:
    """sweeps/mnist.yaml on the real MNIST test set (8,000 training / 2,000 validation).

    ``sets`` are ``--set`` style overrides, with ``__`` for dots: ``train__max_epochs=5``.
    """
    from regsweep.config.loading import load_sweep

    overrides = {
        "study.name": name,
        "study.storage": storage,
        "data.dataset": "idx",
        "data.train_images": str(IMAGES),
        "data.train_labels": str(LABELS),
        "data.val_fraction": 0.2,
        "train.device": "cpu",
        "train.threads": 1,
        **{key.replace("__", "."): value for key, value in sets.items()},
    }
    if not (IMAGES.is_file() and LABELS.is_file()):
        sys.exit(f"error: MNIST test set not found in {MNIST_T10K} (set REGSWEEP_MNIST_T10K)")
    return load_sweep(REPO / "sweeps/mnist.yaml", flags=overrides)
