"""Launch a sweep from Python: everything ``regsweep launch`` and ``regsweep worker`` do,
minus argument parsing.

from regsweep import load_sweep, launch
study, outcome = launch(load_sweep("sweeps/digits.yaml"))
"""

from __future__ import annotations

import optuna
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from regsweep.config.schema import SweepConfig
from regsweep.errors import StorageLost
from regsweep.signals import sigterm_as_exception
from regsweep.storage.locks import study_lock
from regsweep.storage.rdb import build_storage, error_line, full_server_hint
from regsweep.storage.urls import parse_url, redact
from regsweep.sweep.budget import usage
from regsweep.sweep.lifecycle import RunOutcome, worker_name
from regsweep.sweep.progress import SweepProgress
from regsweep.sweep.solo import run_trials
from regsweep.sweep.study import (
    build_pruner,
    build_sampler,
    heartbeat_settings,
    open_study,
    worker_seed,
)


def launch(
    config: SweepConfig,
    *,
    console: Console | None = None,
    sampler_seed: int | None = None,
    worker: bool = False,
) -> tuple[optuna.Study, RunOutcome]:
    """Create or resume the study and run trials until its budget or timeout.

    With ``worker``, this process is one of many on the same storage: its sampler is
    seeded from the study seed, its host and its pid (unless ``sampler_seed`` is given),
    so that workers do not all propose the same first trials.

    Everything that can be wrong with the input is checked before the storage is
    touched, so bad input never leaves a half-made study behind.
    """
    console = console or Console(stderr=True)
    # The cheap checks come first: a typo is reported before seconds of importing PyTorch
    # and minutes of loading data.
    parse_url(config.study.storage)
    if worker and sampler_seed is None:
        sampler_seed = worker_seed(config.study.seed)
    sampler = build_sampler(config, sampler_seed)
    pruner = build_pruner(config)

    import torch

    from regsweep.data.splits import load_splits, resolve_device
    from regsweep.engine.model import import_optimizer_runtime
    from regsweep.sweep.objective import Objective

    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    if config.study.pack == 1:
        import_optimizer_runtime()  # not in the first trial's time
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    storage = build_storage(config.study.storage, heartbeat_settings(config.study))
    try:
        # Under the study's lock: workers starting together agree on one study and on
        # the search space stored with it.
        with study_lock(storage, config.study_name):
            study = open_study(config, storage, sampler=sampler, pruner=pruner)
        done = usage(study).finished
        who = ""
        if worker:
            who = f"worker {worker_name()} (sampler seed {sampler_seed}) · "
        # Printed only now, so that bad input leaves exactly one line (the error) on stderr.
        console.print(
            f"[bold]regsweep[/] {who}study [cyan]{config.study_name}[/] on "
            f"{redact(config.study.storage)}: {done} of {config.study.n_trials} trials done · "
            f"{len(splits.train_x):,} training / {len(splits.val_x):,} validation samples · "
            f"up to {config.train.max_epochs} epochs per trial",
            highlight=False,
            soft_wrap=True,
        )
        progress = SweepProgress(
            console,
            study_name=config.study_name,
            n_trials=config.study.n_trials,
            done=done,
            max_epochs=config.train.max_epochs,
        )
        objective = Objective(config, splits, listener=progress.epoch_done)
        with progress, sigterm_as_exception():
            if config.study.pack > 1:
                from regsweep.sweep.packed import run_packed

                outcome = run_packed(
                    study,
                    config,
                    splits,
                    n_trials=config.study.n_trials,
                    timeout=config.study.timeout,
                    listener=progress,
                    epoch_listener=progress.epoch_done,
                    storage=storage,
                )
            else:
                outcome = run_trials(
                    study,
                    objective,
                    n_trials=config.study.n_trials,
                    timeout=config.study.timeout,
                    listener=progress,
                    storage=storage,
                )
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        # pool_pre_ping rides out one dropped connection; this is a database that stays
        # away. A trial left RUNNING is failed and retried by heartbeat once it is back.
        line = error_line(exc)
        raise StorageLost(
            f"study.storage: lost the database {redact(config.study.storage)} ({line}); "
            + (full_server_hint(line) or "run the command again once it is reachable")
        ) from None
    return study, outcome
