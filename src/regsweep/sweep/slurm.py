"""``regsweep slurm``: N ``regsweep worker`` processes as one Slurm job array.

regsweep slurm sweeps/mnist.yaml --workers 8 --time 4:00:00 --submit

The study in PostgreSQL is the only coordinator, as for any workers: all Slurm does is
place N of them. Each array task ``exec``s one ``regsweep worker``, so the worker *is* the
batch shell and receives Slurm's signals itself: ``scancel``, preemption, and SIGTERM
before the time limit (``--signal=B:TERM@SECONDS``) make it fail and queue again the
trial it holds, as ``docker compose stop`` does; a task killed outright (node lost,
``scancel --signal=KILL --batch``, out of memory) is recovered by heartbeat.

The storage URL reaches the tasks through the environment that sbatch passes on
(``--export=ALL``), never through the script or a command line, where ``squeue``, ``ps``
and anyone who reads the file would see its password.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from regsweep.config.loading import STORAGE_ENV
from regsweep.config.schema import SweepConfig
from regsweep.errors import ConfigError, StorageError
from regsweep.storage.urls import parse_url, redact
from regsweep.sweep.pool import worker_args

# SIGTERM this long before the time limit (sbatch --signal): time to fail and queue again
# the running trial (a second or two) with room for a slow file system or database.
DEFAULT_SIGNAL_S = 120
# sbatch's own bound on --signal's time.
MAX_SIGNAL_S = 0xFFFF

# Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds.
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
# What sbatch takes for no time limit of the job's own.
NO_TIME_LIMIT = ("UNLIMITED", "INFINITE")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)

SQLITE_ON_A_CLUSTER = (
    "study.storage: {url} is SQLite, and the workers of a Slurm array run on several "
    "nodes, sharing the file over a network file system whose file locks are unreliable "
    "(Optuna's FAQ: SQLite is not for parallel workers on NFS); use PostgreSQL "
    "(postgresql+psycopg://USER:PASSWORD@HOST:5432/DB, see the README's 'On a cluster'), "
    "or pin every worker to one node with --nodelist NODE"
)


@dataclass(frozen=True)
class SlurmOptions:
    """What users set on every cluster; ``sbatch_options`` passes anything else through."""

    workers: int
    partition: str | None = None
    time: str | None = None
    cpus_per_worker: int = 1
    mem: str | None = None
    gpus_per_worker: int = 0
    account: str | None = None
    sbatch_options: Sequence[str] = field(default_factory=tuple)
    signal_s: int = DEFAULT_SIGNAL_S
    requeue: bool = False
    nodelist: str | None = None


def time_limit_s(text: str) -> int:
    """Seconds of a Slurm time limit (``90``, ``1:30:00``, ``2-00:00:00``); 0 for none
    (``0``, ``UNLIMITED``, ``INFINITE``: the partition's maximum applies).

    Raises:
        ConfigError: not one of Slurm's formats.
    """
    if text.strip().upper() in NO_TIME_LIMIT:
        return 0
    match = _TIME.match(text.strip())
    if match is None:
        raise ConfigError(
            f"--time: {text!r} is not a Slurm time limit (allowed: MINUTES, MINUTES:SECONDS, "
            "HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES, DAYS-HOURS:MINUTES:SECONDS, "
            "or 0, UNLIMITED or INFINITE for none)"
        )
    days, first, second, third = (int(g) if g else 0 for g in match.groups())
    if match.group(1) is not None:  # days-hours[:minutes[:seconds]]
        return days * 86400 + first * 3600 + second * 60 + third
    if match.group(4) is not None:  # hours:minutes:seconds
        return first * 3600 + second * 60 + third
    return first * 60 + second  # minutes[:seconds]


def check(config: SweepConfig, options: SlurmOptions) -> None:
    """Refuse what would fail on the cluster, before anything is written or submitted.

    Raises:
        ConfigError, StorageError: one line naming the option and what is allowed.
    """
    if options.workers < 1:
        raise ConfigError(f"--workers: {options.workers} is not allowed; give 1 or more")
    if options.cpus_per_worker < 1:
        raise ConfigError(f"--cpus-per-worker: {options.cpus_per_worker}; give 1 or more")
    if options.gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker: {options.gpus_per_worker}; give 0 or more")
    if not 0 <= options.signal_s <= MAX_SIGNAL_S:
        raise ConfigError(
            f"--signal: {options.signal_s} s is not allowed (0 to {MAX_SIGNAL_S}; 0: no "
            "early SIGTERM, only the one at the time limit)"
        )
    if options.time is not None:
        limit = time_limit_s(options.time)
        if limit and options.signal_s and options.signal_s >= limit:
            raise ConfigError(
                f"--signal: SIGTERM {options.signal_s} s before a time limit of {limit} s "
                f"(--time {options.time}) would stop every worker at once; give --signal "
                "below the time limit, or 0"
            )
    if options.mem is not None and not _MEM.match(options.mem):
        raise ConfigError(
            f"--mem: {options.mem!r} is not a Slurm memory size (allowed: a number with an "
            "optional unit K, M, G or T, e.g. 4G)"
        )
    for flag, value in (
        ("--partition", options.partition),
        ("--account", options.account),
        ("--nodelist", options.nodelist),
    ):
        # Each becomes one #SBATCH line: an empty or multi-line value would end the
        # directives early, or put a shell command into the script.
        if value is not None and (not value.strip() or any(c in value for c in "\n\r")):
            raise ConfigError(
                f"{flag}: {value!r} is not allowed (one line, not empty, e.g. {flag}=NAME)"
            )
    for option in options.sbatch_options:
        if not option.startswith("-") or "\n" in option or "\r" in option:
            raise ConfigError(
                f"--sbatch-option: {option!r} is not one sbatch option (allowed: one line "
                "starting with -, e.g. --sbatch-option=--qos=long)"
            )
    url = parse_url(config.study.storage)
    if url.get_backend_name() == "sqlite" and options.nodelist is None:
        raise StorageError(SQLITE_ON_A_CLUSTER.format(url=redact(config.study.storage)))


def job_name(config: SweepConfig) -> str:
    """``regsweep-<study>``, in the characters a job name and a log file name take."""
    return "regsweep-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", config.study_name).strip("-") or "sweep")


def sbatch_script(
    config: SweepConfig,
    sweep: Path,
    options: SlurmOptions,
    *,
    sets: Sequence[str] = (),
    debug: bool = False,
    storage_in_env: bool = True,
    workdir: Path | None = None,
    python: str | None = None,
) -> str:
    """The sbatch script of the job array, commented for the user who reads it.

    ``storage_in_env``: the URL does not come from the sweep file (a flag, ``--set``
    or ``REGSWEEP_STORAGE``), so the tasks must find it in ``REGSWEEP_STORAGE``; the
    script refuses to start a worker without it rather than fall back on the file's.
    """
    check(config, options)
    workdir = (workdir or Path.cwd()).resolve()
    name = job_name(config)
    threads = config.train.threads if config.train.threads is not None else options.cpus_per_worker
    args = worker_args(config, sets, threads, debug)
    command = [python or sys.executable, "-m", "regsweep", "worker", str(sweep.resolve()), *args]
    directives = [
        f"--job-name={name}",
        f"--array=0-{options.workers - 1}",
        "--ntasks=1",
        f"--cpus-per-task={options.cpus_per_worker}",
    ]
    directives += [f"--partition={options.partition}"] * bool(options.partition)
    directives += [f"--account={options.account}"] * bool(options.account)
    directives += [f"--time={options.time}"] * bool(options.time)
    directives += [f"--mem={options.mem}"] * bool(options.mem)
    directives += [f"--gres=gpu:{options.gpus_per_worker}"] * bool(options.gpus_per_worker)
    directives += ["--nodes=1", f"--nodelist={options.nodelist}"] * bool(options.nodelist)
    directives += [f"--signal=B:TERM@{options.signal_s}"] * bool(options.signal_s)
    directives += ["--requeue"] * options.requeue
    directives += [
        f"--chdir={workdir}",
        f"--output={name}-%A_%a.log",
        "--open-mode=append",  # a requeued task adds to its log
        "--export=ALL",  # the submitting shell's environment, REGSWEEP_STORAGE included
        *options.sbatch_options,  # last: sbatch takes the last of a repeated option
    ]
    storage = redact(config.study.storage)
    lines = [
        "#!/bin/bash",
        f"# {options.workers} regsweep workers of study {config.study_name!r}, one Slurm job "
        "array (written by `regsweep slurm`).",
        "#   submit: sbatch THIS_FILE (or: regsweep slurm ... --submit)",
        f"#   follow: squeue --name {name}  ·  regsweep watch {sweep}",
        f"#   stop:   scancel --name {name}  (each worker fails and queues again its trial)",
        *(f"#SBATCH {shlex.quote(d) if ' ' in d else d}" for d in directives),
        "",
        "set -euo pipefail",
        f"# The database, {storage}, comes from the environment sbatch ran in, never from",
        "# this file or a command line, where squeue and ps would show its password.",
    ]
    if storage_in_env:
        lines.append(
            f': "${{{STORAGE_ENV}:?export {STORAGE_ENV}=postgresql+psycopg://USER:PASSWORD@'
            'HOST:5432/DB in the shell that runs sbatch}"'
        )
    lines += [
        "# PyTorch threads: the CPUs Slurm gave this task (also train.threads below).",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        "# exec: the worker replaces this shell, so that Slurm's signals reach it (scancel,",
        "# preemption, and --signal's SIGTERM before the time limit): it fails the trial it",
        "# holds, queues it again and exits 143. Each trial records this task as slurm_job.",
        "exec " + " ".join(shlex.quote(part) for part in command),
        "",
    ]
    return "\n".join(lines)


def sbatch_path() -> str:
    """The ``sbatch`` command, for ``--submit``.

    Raises:
        ConfigError: not on PATH.
    """
    found = shutil.which("sbatch")
    if found is None:
        raise ConfigError(
            "--submit: sbatch not found on PATH (is this a Slurm login node?); write the "
            "script with -o FILE and submit it with sbatch where Slurm runs"
        )
    return found


def submit(script: str, path: Path | None, url: str) -> str:
    """Submit the job array; returns its job id.

    The URL goes to sbatch in its environment, which ``--export=ALL`` hands to every task.

    Raises:
        ConfigError: sbatch refused the job (its own first error line).
    """
    sbatch = sbatch_path()
    env = {**os.environ, STORAGE_ENV: url}
    args = [sbatch, "--parsable", *([str(path)] if path is not None else [])]
    try:
        result = subprocess.run(
            args,
            input=None if path is not None else script,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError("--submit: sbatch gave no answer within 120 s") from None
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
        raise ConfigError(
            f"--submit: sbatch refused the job (exit {result.returncode}: {detail.strip()})"
        )
    return result.stdout.strip().split(";")[0]
