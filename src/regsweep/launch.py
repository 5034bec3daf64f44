"""Launch a sweep from Python: everything ``regsweep launch`` does, minus argument parsing.

from regsweep import load_sweep, launch
study, outcome = launch(load_sweep("sweeps/digits.yaml"))
"""

from __future__ import annotations

import optuna
from rich.console import Console

from regsweep.budget import usage
from regsweep.config import SweepConfig
from regsweep.progress import SweepProgress
from regsweep.runner import RunOutcome, run_trials, sigterm_as_exception
from regsweep.storage import HeartbeatSettings, build_storage, parse_url, redact
from regsweep.study import build_pruner, build_sampler, open_study


def launch(
    config: SweepConfig, *, console: Console | None = None, sampler_seed: int | None = None
) -> tuple[optuna.Study, RunOutcome]:
    """Create or resume the study and run trials until its budget or timeout.

    Everything that can be wrong with the input is checked before the storage is
    touched, so bad input never leaves a half-made study behind.
    """
    console = console or Console(stderr=True)
    # The cheap checks come first: a typo is reported before seconds of importing PyTorch
    # and minutes of loading data.
    parse_url(config.study.storage)
    sampler = build_sampler(config, sampler_seed)
    pruner = build_pruner(config)

    import torch

    from regsweep.data import load_splits, resolve_device
    from regsweep.objective import Objective

    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    storage = build_storage(config.study.storage, HeartbeatSettings.from_study(config.study))
    study = open_study(config, storage, sampler=sampler, pruner=pruner)

    done = usage(study).finished
    # Printed only now, so that bad input leaves exactly one line (the error) on stderr.
    console.print(
        f"[bold]regsweep[/] study [cyan]{config.study_name}[/] on "
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
            from regsweep.packed_runner import run_packed

            outcome = run_packed(
                study,
                config,
                splits,
                n_trials=config.study.n_trials,
                timeout=config.study.timeout,
                listener=progress,
                epoch_listener=progress.epoch_done,
                heartbeat_storage=storage,
            )
            return study, outcome
        outcome = run_trials(
            study,
            objective,
            n_trials=config.study.n_trials,
            timeout=config.study.timeout,
            listener=progress,
            heartbeat_storage=storage,
        )
    return study, outcome
