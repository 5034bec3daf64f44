"""``regsweep trials``, ``best`` and ``dashboard``: look at a study while or after it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from optuna.trial import TrialState
from rich.table import Table

from regsweep.cli.app import (
    DebugOpt,
    NTrialsOpt,
    OptionalSweepArg,
    StorageOpt,
    StudyOpt,
    command,
    err,
    out,
    sweep_flags,
)
from regsweep.config.loading import load_sweep
from regsweep.config.schema import REGULARIZERS
from regsweep.data.tasks import best_scores, format_metric
from regsweep.errors import ConfigError, StudyError
from regsweep.signals import Terminated, sigterm_as_exception
from regsweep.sweep.locate import StudyRef, locate, open_existing, open_existing_storage
from regsweep.sweep.progress import format_params, trials_table
from regsweep.sweep.study import CONFIG_ATTR, config_of, find_study


@command
def dashboard(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", metavar="HOST", help="Address to listen on; 0.0.0.0 exposes it to all."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port to listen on.")
    ] = 8080,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            "--artifacts",
            metavar="DIR",
            help="Artifact store to serve (default: beside a SQLite database).",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Serve optuna-dashboard on the study's storage (no login: keep it on 127.0.0.1)."""
    from regsweep.insight.dashboard import serve

    serve(locate(sweep, storage, study), host=host, port=port, console=err, artifacts=artifacts)


@command
def trials(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List a study's trials: state, value, params, epochs run."""
    study_obj, _ = open_existing(locate(sweep, storage, study))
    rows = study_obj.get_trials(deepcopy=False)
    out.print(trials_table(rows, f"study {study_obj.study_name}: {len(rows)} trials"))


@command
def best(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show the best trial's params and metrics, and its params as YAML to paste."""
    study_obj, _ = open_existing(locate(sweep, storage, study))
    completed = study_obj.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise StudyError(f"--study: study {study_obj.study_name!r} has no completed trial yet")
    trial = study_obj.best_trial
    attrs = trial.user_attrs
    table = Table(
        title=f"best trial of {study_obj.study_name}: #{trial.number}",
        title_justify="left",
        show_header=False,
    )
    table.add_row("val_loss", f"{trial.value:.5f}")
    for name, value in best_scores(attrs).items():
        if value is not None:
            table.add_row(f"best_{name}", format_metric(name, value))
    for key, fmt in (
        ("best_epoch", "{}"),
        ("epochs_run", "{}"),
        ("stopped_early", "{}"),
        ("weight_sparsity", "{:.1%}"),
        ("epoch_seconds", "{:.2f} s"),
    ):
        if key in attrs:
            table.add_row(key, fmt.format(attrs[key]))
    for name in REGULARIZERS:
        if name in trial.params:
            table.add_row(name, str(trial.params[name]))
    out.print(table)
    snippet = {"search_space": {n: trial.params[n] for n in REGULARIZERS if n in trial.params}}
    out.print("Paste into a sweep file to fix these values:")
    # Plain text, not highlighted: Rich pads highlighted lines, which spoils copy and paste.
    out.print(yaml.safe_dump(snippet, sort_keys=False).rstrip(), highlight=False, markup=False)
    if CONFIG_ATTR not in study_obj.user_attrs:
        err.print("note: this study was not made by regsweep; metrics may be missing")


@command
def watch(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    n_trials: NTrialsOpt = None,
    interval: Annotated[
        float,
        typer.Option("--interval", metavar="SECONDS", min=0.1, help="How often to read the study."),
    ] = 2.0,
    debug: DebugOpt = False,
) -> None:
    """Follow a study whose workers run elsewhere (compose, Slurm, Kubernetes), live, until
    its budget is met; Ctrl-C stops only the watching."""
    from regsweep.sweep.watch import Budget, wait_for_database, wait_for_study
    from regsweep.sweep.watch import watch as follow

    config = None
    if n_trials is not None and n_trials < 1:  # as the sweep file's study.n_trials
        raise ConfigError(f"--n-trials: {n_trials} is not allowed (allowed: 1 or more)")
    if sweep is not None:
        config = load_sweep(sweep, flags=sweep_flags(storage, study, n_trials))
        ref = StudyRef(config.study.storage, config.study_name)
    else:
        ref = locate(None, storage, study)
    try:
        with sigterm_as_exception():
            wait_for_database(ref.url, err, interval)
            db = open_existing_storage(ref.url, "a worker")
            if ref.name is None:
                study_obj = find_study(db, None, ref.url)
            else:
                study_obj = wait_for_study(db, ref.url, ref.name, err, interval)
            # The budget and grace period as the sweep file says now (they may change
            # between runs); the epochs as the study was made (a resume cannot change them).
            stored = config_of(study_obj)
            current = config or stored
            if current is None:
                raise StudyError(
                    f"--study: study {study_obj.study_name!r} was not made by regsweep, so it "
                    "stores no budget or epochs; give the sweep file it runs"
                )
            budget = Budget(
                current.study.n_trials if n_trials is None else n_trials,
                (stored or current).train.max_epochs,
                current.study.grace_period,
            )
            follow(study_obj, db, budget, console=err, interval_s=interval)
    except (KeyboardInterrupt, Terminated) as exc:
        err.print("stopped watching: the study and its workers go on (watch writes nothing)")
        raise typer.Exit(130 if isinstance(exc, KeyboardInterrupt) else 143) from None
    trials_now = study_obj.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials_now) for s in TrialState}
    line = (
        f"study {study_obj.study_name}: budget of {budget.n_trials} trials met ("
        + ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n)
        + ")"
    )
    completed = [t for t in trials_now if t.state == TrialState.COMPLETE]
    if completed:
        best = study_obj.best_trial
        params = format_params(best.params)
        line += f"; best trial {best.number}: val_loss {best.value:.4f}  {params}"
    out.print(line, highlight=False, soft_wrap=True)
