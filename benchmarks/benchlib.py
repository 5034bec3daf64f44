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
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
MNIST_T10K = Path(os.environ.get("REGSWEEP_MNIST_T10K", REPO.parent / "shared/data/mnist-t10k"))
IMAGES = MNIST_T10K / "t10k-images-idx3-ubyte.gz"
LABELS = MNIST_T10K / "t10k-labels-idx1-ubyte.gz"

sys.path.insert(0, str(REPO / "src"))


def mnist_t10k() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test set: 10,000 images (uint8, 28 x 28) and labels."""
    from regsweep.idx import read_idx

    if not (IMAGES.is_file() and LABELS.is_file()):
        sys.exit(f"error: MNIST test set not found in {MNIST_T10K} (set REGSWEEP_MNIST_T10K)")
    return read_idx(IMAGES), read_idx(LABELS)


def repeated(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images: the 10,000 real test images repeated (for a full-size epoch)."""
    images, labels = mnist_t10k()
    reps = -(-n // len(images))
    return np.concatenate([images] * reps)[:n], np.concatenate([labels] * reps)[:n]


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
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
