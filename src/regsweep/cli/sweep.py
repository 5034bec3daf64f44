"""``regsweep launch``, ``worker`` and ``validate``: run a sweep, or check its file."""

from __future__ import annotations

from typing import Annotated

import optuna
import typer
import yaml
from optuna.trial import TrialState
from rich.syntax import Syntax
from rich.table import Table

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
from regsweep.config.loading import STORAGE_ENV, load_sweep
from regsweep.config.schema import SweepConfig
from regsweep.data.tasks import scores_text
from regsweep.storage.urls import redact
from regsweep.sweep.lifecycle import RunOutcome
from regsweep.sweep.progress import format_params

WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        metavar="N",
        min=1,
        help="Run N local worker processes on the same storage, CPU threads shared out.",
    ),
]


@command
def launch(
    sweep: SweepArg,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    n_trials: NTrialsOpt = None,
    timeout: TimeoutOpt = None,
    pack: PackOpt = None,
    set_: SetOpt = None,
    workers: WorkersOpt = 1,
    debug: DebugOpt = False,
) -> None:
    """Create or resume a study and run trials until its budget is reached."""
    config = load_sweep(
        sweep, sets=set_ or [], flags=sweep_flags(storage, study, n_trials, timeout, pack)
    )
    if workers > 1:
        from regsweep.sweep.pool import run_pool

        study_obj, outcome = run_pool(
            config, sweep, workers=workers, sets=set_ or [], debug=debug, console=err
        )
    else:
        from regsweep.sweep.launch import (
            launch as launch_sweep,  # imports PyTorch: only when training
        )

        study_obj, outcome = launch_sweep(config, console=err)
    print_summary(study_obj, outcome, config)


@command
def worker(
    sweep: SweepArg,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    n_trials: NTrialsOpt = None,
    timeout: TimeoutOpt = None,
    pack: PackOpt = None,
    set_: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Join the study (creating it if needed) and run trials until its shared budget.

    Start as many as you like, on this machine or others, against one database.
    """
    config = load_sweep(
        sweep, sets=set_ or [], flags=sweep_flags(storage, study, n_trials, timeout, pack)
    )
    from regsweep.sweep.launch import launch as launch_sweep

    study_obj, outcome = launch_sweep(config, console=err, worker=True)
    print_summary(study_obj, outcome, config)


def print_summary(study: optuna.Study, outcome: RunOutcome, config: SweepConfig) -> None:
    trials = study.get_trials(deepcopy=False)
    table = Table(title=f"study {study.study_name}", title_justify="left", show_header=False)
    counts = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    if outcome.finished:
        table.add_row("this run", f"{len(outcome.finished)} trials ({outcome.reason})")
    else:
        hint = "; raise --n-trials to add more" if outcome.budget_reached else ""
        table.add_row("this run", f"no trial run: {outcome.reason}{hint}")
    table.add_row("in study", ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n))
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        scores = scores_text(best.user_attrs)
        table.add_row(
            "best",
            f"trial {best.number}: val_loss {best.value:.4f}" + (f", {scores}" * bool(scores)),
        )
        table.add_row("params", format_params(best.params))
    out.print(table)
    shown = redact(config.study.storage)
    if shown == config.study.storage:
        out.print(f"watch it: [bold]optuna-dashboard {shown}[/]", highlight=False)
    else:
        # A command with *** in place of the password would not log in.
        out.print(
            f"watch it: [bold]regsweep dashboard --study {study.study_name}[/] with the same "
            f"storage as this run ({shown}: --storage or {STORAGE_ENV})",
            highlight=False,
        )


@command
def validate(
    sweep: SweepArg,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    n_trials: NTrialsOpt = None,
    timeout: TimeoutOpt = None,
    pack: PackOpt = None,
    set_: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Check a sweep file and print the resolved config and worst-case budget; runs nothing."""
    config = load_sweep(
        sweep, sets=set_ or [], flags=sweep_flags(storage, study, n_trials, timeout, pack)
    )
    from regsweep.sweep.study import build_pruner, build_sampler, stored_config

    build_sampler(config)  # sampler and pruner options are checked by constructing them
    build_pruner(config)
    out.print(Syntax(yaml.safe_dump(stored_config(config), sort_keys=False), "yaml"))
    out.print(
        f"{sweep}: valid. Worst case: {config.study.n_trials} trials x "
        f"{config.train.max_epochs} epochs = {config.worst_case_epochs()} epochs "
        "(pruning and early stopping train fewer)"
        + (
            f", up to {config.study.pack} trials at once per worker."
            if config.study.pack > 1
            else "."
        ),
        highlight=False,
    )
