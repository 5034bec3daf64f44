"""``regsweep slurm``'s script and bad input, without a cluster (tests/deploy/test_slurm.py
submits real job arrays)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import IdxData, idx_sweep, run_cli_here

PG = "postgresql+psycopg://sweeper:Hunter2-secret@db.example:5432/sweeps"


@pytest.fixture
def sweep(tiny_idx: IdxData, tmp_path: Path) -> Path:
    raw = idx_sweep(tiny_idx, tmp_path, study={"name": "cluster", "storage": "sqlite:///x.db"})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def script_of(sweep: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_cli_here("slurm", sweep, *args, cwd=sweep.parent, env=env)
    assert result.code == 0, result.stderr
    return result.stdout


def directives(script: str) -> list[str]:
    return [ln.removeprefix("#SBATCH ") for ln in script.splitlines() if ln.startswith("#SBATCH")]


def test_the_script_runs_one_worker_per_array_task(sweep: Path) -> None:
    script = script_of(
        sweep,
        "--workers=6",
        "--storage",
        PG,
        "--n-trials=60",
        "--pack=4",
        "--set=train.max_epochs=7",
        "--set=study.storage=sqlite:///ignored.db",
        "--partition=gpu",
        "--time=1-12:00:00",
        "--cpus-per-worker=2",
        "--mem=8G",
        "--gpus-per-worker=1",
        "--account=lab",
        "--sbatch-option=--qos=long",
        "--requeue",
    )
    found = directives(script)
    for expected in (
        "--job-name=regsweep-cluster",
        "--array=0-5",
        "--ntasks=1",
        "--cpus-per-task=2",
        "--partition=gpu",
        "--account=lab",
        "--time=1-12:00:00",
        "--mem=8G",
        "--gres=gpu:1",
        "--signal=B:TERM@120",
        "--requeue",
        f"--chdir={sweep.parent}",
        "--output=regsweep-cluster-%A_%a.log",
        "--open-mode=append",
        "--export=ALL",
    ):
        assert expected in found, (expected, found)
    assert found[-1] == "--qos=long"  # pass-through last: sbatch keeps the last of a repeat
    (command,) = [ln for ln in script.splitlines() if ln.startswith("exec ")]
    assert f"-m regsweep worker {sweep}" in command
    for part in ("--study cluster", "--n-trials 60", "--pack 4", "train.max_epochs=7"):
        assert part in command, command
    assert "train.threads=1" in command  # the sweep file's own setting wins
    # The URL reaches the tasks through the environment only: never in the script.
    assert "Hunter2-secret" not in script and "study.storage" not in command
    assert ': "${REGSWEEP_STORAGE:?' in script
    assert "sweeper:***@db.example" in script  # named, redacted, for the reader
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr


def test_the_script_refuses_to_start_a_worker_without_the_database_url(
    sweep: Path, tmp_path: Path
) -> None:
    path = tmp_path / "job.sbatch"
    result = run_cli_here("slurm", sweep, "--storage", PG, "-o", path, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "export REGSWEEP_STORAGE=" in result.stderr and f"sbatch {path}" in result.stderr
    env = {k: v for k, v in os.environ.items() if k != "REGSWEEP_STORAGE"}
    ran = subprocess.run(["bash", path], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0
    assert "export REGSWEEP_STORAGE=" in ran.stderr


def test_a_url_from_the_sweep_file_needs_no_environment(tiny_idx: IdxData, tmp_path: Path) -> None:
    raw = idx_sweep(tiny_idx, tmp_path, study={"name": "filed", "storage": PG})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    script = script_of(path, "--workers=2", "--signal=0")
    assert "REGSWEEP_STORAGE:?" not in script
    assert not [d for d in directives(script) if d.startswith("--signal")]


def test_sqlite_is_allowed_when_pinned_to_one_node(sweep: Path) -> None:
    found = directives(script_of(sweep, "--workers=2", "--nodelist=node7"))
    assert "--nodes=1" in found and "--nodelist=node7" in found


@pytest.mark.parametrize("limit", ["0", "UNLIMITED", "infinite"])
def test_no_time_limit_is_slurms_own_words(sweep: Path, limit: str) -> None:
    found = directives(script_of(sweep, "--storage", PG, f"--time={limit}"))
    assert f"--time={limit}" in found and "--signal=B:TERM@120" in found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers=0", "--storage", PG], "error: --workers: 0 is not allowed"),
        (["--workers=2"], "error: study.storage: sqlite:///x.db is SQLite"),
        (["--storage", PG, "--time=soon"], "error: --time: 'soon' is not a Slurm time limit"),
        (["--storage", PG, "--time=1"], "error: --signal: SIGTERM 120 s before a time limit"),
        (["--storage", PG, "--signal=-5"], "error: --signal: -5 s is not allowed"),
        (["--storage", PG, "--mem=lots"], "error: --mem: 'lots' is not a Slurm memory size"),
        (["--storage", PG, "--sbatch-option=qos=x"], "error: --sbatch-option: 'qos=x'"),
        (["--storage", PG, "--cpus-per-worker=0"], "error: --cpus-per-worker: 0"),
        # One #SBATCH line each: a line break would put a command into the script.
        (["--storage", PG, "--partition=a\nrm -rf ~"], "error: --partition: 'a\\nrm -rf ~'"),
        (["--storage", PG, "--account= "], "error: --account: ' ' is not allowed"),
        (["--workers=2", "--nodelist="], "error: --nodelist: '' is not allowed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sweep: Path, args: list[str], message: str) -> None:
    result = run_cli_here("slurm", sweep, *args, cwd=sweep.parent)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert result.stdout == ""


def test_sqlite_on_a_cluster_says_why_and_what_instead(sweep: Path) -> None:
    result = run_cli_here("slurm", sweep, "--workers=2", cwd=sweep.parent)
    line = result.stderr.strip()
    assert "network file system" in line and "Optuna's FAQ" in line
    assert "use PostgreSQL" in line and "--nodelist NODE" in line


def test_submit_without_sbatch_is_one_line_and_writes_nothing(sweep: Path, tmp_path: Path) -> None:
    target = tmp_path / "job.sbatch"
    result = run_cli_here(
        "slurm",
        sweep,
        "--storage",
        PG,
        "-o",
        target,
        "--submit",
        cwd=tmp_path,
        env={"PATH": str(tmp_path / "no-slurm-here")},
    )
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --submit: sbatch not found"), lines
    assert not target.exists()
