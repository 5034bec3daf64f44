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
    OptionalSweepArg,
    StorageOpt,
    StudyOpt,
    command,
    err,
    out,
)
from regsweep.config.schema import REGULARIZERS
from regsweep.data.tasks import best_scores, format_metric
from regsweep.errors import StudyError
from regsweep.sweep.locate import locate, open_existing
from regsweep.sweep.progress import trials_table
from regsweep.sweep.study import CONFIG_ATTR


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
