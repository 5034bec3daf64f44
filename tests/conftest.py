"""Shared fixtures: generated IDX data, the real MNIST test set, sweep files, the real CLI."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from regsweep.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
MNIST_T10K = Path(os.environ.get("REGSWEEP_MNIST_T10K", REPO.parent / "shared/data/mnist-t10k"))
POSTGRES_URL = os.environ.get(
    "REGSWEEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# A test's figures (the compose test's PASS/INFO lines), carried in its report's
# user_properties from an xdist worker, which has no terminal, to the one that prints.
FIGURES = "figures"
_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Looked up now: the terminal reporter registers itself after this conftest's configure.
    terminal = _config.pluginmanager.get_plugin("terminalreporter") if _config else None
    if report.when != "teardown" or terminal is None:
        return
    for name, value in report.user_properties:
        if name == FIGURES:
            terminal.write_line(f"\n{report.nodeid}")
            terminal.write_line(str(value))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests train tiny networks, which run fastest on one thread, also on a busy machine."""
    import torch

    torch.set_num_threads(1)


def skip_or_fail(reason: str) -> None:
    """Skip where a resource is absent, but fail under CI=true, where it must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@dataclass(frozen=True)
class IdxData:
    train_images: Path
    train_labels: Path
    test_images: Path
    test_labels: Path


def make_idx_dataset(
    folder: Path, n_train: int = 600, n_test: int = 200, side: int = 8, seed: int = 0
) -> IdxData:
    """A tiny learnable IDX data set: each class is a noisy copy of its own random template."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, side, side))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        noise = rng.normal(0, 60, size=(n, side, side))
        images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    folder.mkdir(parents=True, exist_ok=True)
    data = IdxData(
        *(
            folder / name
            for name in (
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "test-images-idx3-ubyte.gz",
                "test-labels-idx1-ubyte.gz",
            )
        )
    )
    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    write_idx(data.train_images, train_x)
    write_idx(data.train_labels, train_y)
    write_idx(data.test_images, test_x)
    write_idx(data.test_labels, test_y)
    return data


@pytest.fixture(scope="session")
def tiny_idx(tmp_path_factory: pytest.TempPathFactory) -> IdxData:
    return make_idx_dataset(tmp_path_factory.mktemp("tiny-idx"))


@pytest.fixture(scope="session")
def mnist_t10k() -> IdxData:
    """The real MNIST test set from ../shared (10,000 images), used as a small real data set."""
    images = MNIST_T10K / "t10k-images-idx3-ubyte.gz"
    labels = MNIST_T10K / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        skip_or_fail(f"real MNIST test set not found in {MNIST_T10K}")
    return IdxData(images, labels, images, labels)


def idx_sweep(
    data: IdxData, tmp_path: Path, *, with_test: bool = True, **sections: dict[str, Any]
) -> dict[str, Any]:
    """A small sweep over ``data``, stored in ``tmp_path``; ``sections`` update its sections."""
    raw: dict[str, Any] = {
        "study": {
            "name": "tiny",
            "storage": f"sqlite:///{tmp_path / 'study.db'}",
            "n_trials": 4,
            "seed": 0,
            "sampler": {"name": "tpe", "options": {"n_startup_trials": 2}},
            "pruner": "median",
        },
        "data": {
            "dataset": "idx",
            "train_images": str(data.train_images),
            "train_labels": str(data.train_labels),
            "val_fraction": 0.25,
        },
        "model": {"hidden": [32, 16]},
        "train": {"max_epochs": 4, "batch_size": 64, "device": "cpu", "threads": 1},
        "search_space": {
            "dropout": {"low": 0.0, "high": 0.5},
            "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
            "l1": {"low": 1e-7, "high": 1e-3, "log": True},
            "batch_norm": {"choices": [False, True]},
            "patience": {"low": 1, "high": 3},
        },
    }
    if with_test:
        raw["data"].update(test_images=str(data.test_images), test_labels=str(data.test_labels))
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


@pytest.fixture
def write_sweep(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    """Write a sweep dict to a YAML file in the test's folder and return its path."""

    def write(raw: dict[str, Any], name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> CliResult:
    """Run the real ``regsweep`` command in a subprocess, as a user would."""
    # A user's REGSWEEP_STORAGE must not leak into tests; a test can still set it via env.
    full_env = {k: v for k, v in os.environ.items() if k != "REGSWEEP_STORAGE"}
    full_env.update({"COLUMNS": "200", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "regsweep", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_cli_here(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> CliResult:
    """``regsweep ARGS`` through the real CLI (``regsweep.cli.main``), in this process.

    The same parsing, checks, messages and exit status as :func:`run_cli`, without a new
    interpreter, which costs about 2 s of imports (10 with PyTorch): for bad input and
    the read commands. What needs a process of its own (signals, the statuses that
    ``os._exit`` sets, pools of workers, training) uses :func:`run_cli`.
    """
    from regsweep.cli import main
    from regsweep.cli.app import err, out

    # The consoles took their width when regsweep.cli was imported; run_cli's COLUMNS=200.
    out.width = err.width = 200
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.pop("REGSWEEP_STORAGE", None)  # as run_cli: a user's must not leak in
    os.environ.update({"COLUMNS": "200", **(env or {})})
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([str(a) for a in args])
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL server's URL; skips (fails under CI=true) when unreachable."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except Exception as exc:  # any failure to connect means: no server here
        skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    finally:
        engine.dispose()
    return POSTGRES_URL
