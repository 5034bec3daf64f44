"""``regsweep slurm`` and ``regsweep kubernetes``: hand N workers to a cluster's scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regsweep.cli.app import (
    DebugOpt,
    NTrialsOpt,
    PackOpt,
    SetOpt,
    StorageOpt,
    StudyOpt,
    SweepArg,
    TimeoutOpt,
    command,
    err,
    out,
    sweep_flags,
)
from regsweep.config.loading import load_sweep, parse_set
from regsweep.config.schema import SweepConfig
from regsweep.errors import ConfigError

ClusterWorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", metavar="N", help="How many workers: array tasks, or the Job's pods."
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option("-o", "--output", metavar="FILE", help="Write to FILE instead of printing."),
]
CpusOpt = Annotated[
    int, typer.Option("--cpus-per-worker", metavar="N", help="CPUs (and PyTorch threads) each.")
]
MemOpt = Annotated[
    str | None, typer.Option("--mem", metavar="SIZE", help="Memory per worker, e.g. 4G.")
]
GpusOpt = Annotated[
    int, typer.Option("--gpus-per-worker", metavar="N", help="GPUs per worker (default 0).")
]


def _resolve(
    sweep: Path,
    sets: list[str],
    storage: str | None,
    study: str | None,
    n_trials: int | None,
    timeout: float | None,
    pack: int | None,
) -> SweepConfig:
    flags = sweep_flags(storage, study, n_trials, timeout, pack)
    config = load_sweep(sweep, sets=sets, flags=flags)
    from regsweep.sweep.study import build_pruner, build_sampler

    # Checked once here, not by every worker after it waited in the queue.
    build_sampler(config)
    build_pruner(config)
    return config


def _write(text: str, path: Path) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {path} ({exc.strerror or exc})") from None


@command
def slurm(
    sweep: SweepArg,
    workers: ClusterWorkersOpt = 1,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    n_trials: NTrialsOpt = None,
    timeout: TimeoutOpt = None,
    pack: PackOpt = None,
    set_: SetOpt = None,
    partition: Annotated[
        str | None, typer.Option("--partition", metavar="NAME", help="Slurm partition.")
    ] = None,
    time: Annotated[
        str | None,
        typer.Option("--time", metavar="LIMIT", help="Time limit of each task, e.g. 4:00:00."),
    ] = None,
    cpus_per_worker: CpusOpt = 1,
    mem: MemOpt = None,
    gpus_per_worker: GpusOpt = 0,
    account: Annotated[
        str | None, typer.Option("--account", metavar="NAME", help="Slurm account to charge.")
    ] = None,
    sbatch_option: Annotated[
        list[str] | None,
        typer.Option(
            "--sbatch-option",
            metavar="OPTION",
            help="Any other sbatch option, as an #SBATCH line: --sbatch-option=--qos=long.",
        ),
    ] = None,
    signal: Annotated[
        int,
        typer.Option(
            "--signal",
            metavar="SECONDS",
            help="SIGTERM this long before the time limit (0: only at the limit).",
        ),
    ] = 120,
    requeue: Annotated[
        bool,
        typer.Option("--requeue", help="Let Slurm requeue a preempted task; it rejoins."),
    ] = False,
    nodelist: Annotated[
        str | None,
        typer.Option(
            "--nodelist", metavar="NODE", help="Pin every worker to this node (SQLite needs it)."
        ),
    ] = None,
    output: OutputOpt = None,
    submit: Annotated[
        bool, typer.Option("--submit", help="Submit it with sbatch and say how to follow it.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Write an sbatch script that runs N workers as a Slurm job array; --submit submits it."""
    from regsweep.sweep import slurm as slurm_jobs

    sets = set_ or []
    config = _resolve(sweep, sets, storage, study, n_trials, timeout, pack)
    options = slurm_jobs.SlurmOptions(
        workers=workers,
        partition=partition,
        time=time,
        cpus_per_worker=cpus_per_worker,
        mem=mem,
        gpus_per_worker=gpus_per_worker,
        account=account,
        sbatch_options=tuple(sbatch_option or ()),
        signal_s=signal,
        requeue=requeue,
        nodelist=nodelist,
    )
    slurm_jobs.check(config, options)
    if submit:
        slurm_jobs.sbatch_path()  # before anything is written
    # The storage the sweep file gives by itself: the tasks read it there. Any other (a
    # flag, --set, REGSWEEP_STORAGE) must reach them through their environment.
    own = [s for s in sets if "study.storage" not in parse_set([s])]
    from_file = load_sweep(sweep, sets=own, env={}).study.storage
    storage_in_env = from_file != config.study.storage
    script = slurm_jobs.sbatch_script(
        config, sweep, options, sets=sets, debug=debug, storage_in_env=storage_in_env
    )
    name = slurm_jobs.job_name(config)
    if output is not None:
        _write(script, output)
        err.print(f"wrote {output}", highlight=False)
    if not submit:
        if output is None:
            out.print(script, end="", markup=False, highlight=False, soft_wrap=True)
        export = f"export {slurm_jobs.STORAGE_ENV}=...; " if storage_in_env else ""
        err.print(
            f"submit it with: {export}sbatch {output or 'FILE'}  (or: regsweep slurm ... --submit)",
            highlight=False,
            soft_wrap=True,
        )
        return
    job = slurm_jobs.submit(script, output, config.study.storage)
    out.print(
        f"submitted job array {job}: {workers} workers of study {config.study_name}\n"
        f"follow: squeue -j {job}  ·  sacct -j {job}  ·  regsweep watch {sweep}"
        f"  ·  logs: {name}-{job}_*.log\n"
        f"stop:   scancel {job}  (each worker fails the trial it holds and queues it again)",
        highlight=False,
        soft_wrap=True,
    )


@command
def kubernetes(
    sweep: SweepArg,
    image: Annotated[
        str,
        typer.Option(
            "--image", metavar="IMAGE", help="The regsweep image the pods run (the Dockerfile's)."
        ),
    ],
    workers: ClusterWorkersOpt = 1,
    study: StudyOpt = None,
    n_trials: NTrialsOpt = None,
    timeout: TimeoutOpt = None,
    pack: PackOpt = None,
    set_: SetOpt = None,
    cpus_per_worker: CpusOpt = 1,
    mem: Annotated[
        str, typer.Option("--mem", metavar="SIZE", help="Memory per worker, e.g. 4Gi.")
    ] = "2Gi",
    gpus_per_worker: GpusOpt = 0,
    external_database: Annotated[
        bool,
        typer.Option(
            "--external-database",
            help="No in-cluster PostgreSQL: the Secret holds a managed server's URL.",
        ),
    ] = False,
    db_storage: Annotated[
        str,
        typer.Option("--db-storage", metavar="SIZE", help="The database's volume, e.g. 10Gi."),
    ] = "10Gi",
    output: OutputOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write the Kubernetes manifests of a sweep: PostgreSQL, the sweep file, N workers as an
    Indexed Job, and the dashboard (kubectl port-forward only)."""
    from regsweep.sweep import kubernetes as k8s

    sets = set_ or []
    # The storage comes from the Secret in the cluster; the sweep file's is not used.
    own = [s for s in sets if "study.storage" not in parse_set([s])]
    config = _resolve(sweep, own, None, study, n_trials, timeout, pack)
    options = k8s.KubernetesOptions(
        workers=workers,
        image=image,
        cpus_per_worker=cpus_per_worker,
        mem=mem,
        gpus_per_worker=gpus_per_worker,
        external_database=external_database,
        db_storage=db_storage,
    )
    objects = k8s.manifests(config, sweep.read_text(), options, sets=own, debug=debug)
    text = k8s.render(objects, config, options)
    if output is None:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
        return
    _write(text, output)
    err.print(
        f"wrote {output}: create the Secret {k8s.SECRET} once (see the file's first lines), "
        f"then kubectl apply -f {output}",
        highlight=False,
        soft_wrap=True,
    )
