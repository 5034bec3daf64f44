"""The ``regsweep`` command: parse, call the library, print. Nothing else lives here.

regsweep launch sweeps/digits.yaml
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import optuna
import typer
import yaml
from optuna.trial import TrialState
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from regsweep.config import REGULARIZERS, SweepConfig
from regsweep.errors import RegsweepError, StudyError
from regsweep.locate import locate, open_existing
from regsweep.progress import format_params, trials_table
from regsweep.runner import RunOutcome, Terminated
from regsweep.storage import redact
from regsweep.study import CONFIG_ATTR
from regsweep.sweepfile import STORAGE_ENV, load_sweep

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Hyperparameter sweeps over the regularizers of a PyTorch MLP, on Optuna.",
)


# Piped or in CI, Rich would assume 80 columns and cut the trials table's values short;
# files and logs have no width, so they get a wide one (COLUMNS still wins).
def _width(stream: TextIO) -> int | None:
    return None if stream.isatty() or "COLUMNS" in os.environ else 200


out = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))

# Options shared by several commands.
SweepArg = Annotated[
    Path, typer.Argument(metavar="SWEEP.yaml", help="The sweep file (YAML).", show_default=False)
]
OptionalSweepArg = Annotated[
    Path | None,
    typer.Argument(metavar="SWEEP.yaml", help="A sweep file, for its storage and study name."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URL",
        help="Database URL; overrides REGSWEEP_STORAGE and the sweep file.",
    ),
]
StudyOpt = Annotated[str | None, typer.Option("--study", metavar="NAME", help="Study name.")]
NTrialsOpt = Annotated[
    int | None,
    typer.Option(
        "--n-trials", metavar="N", help="Trial budget of the study, all workers together."
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout", metavar="SECONDS", help="Start no new trial after this many seconds."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override any key: --set train.max_epochs=3 (repeatable).",
    ),
]
PackOpt = Annotated[
    int | None,
    typer.Option("--pack", metavar="K", help="Train up to K trials at once as one batched model."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


F = TypeVar("F", bound=Callable[..., Any])


def command(fn: F) -> F:
    """Register ``fn`` as a subcommand whose failures become one line and an exit status.

    Bad input (any :class:`RegsweepError`) exits 2, Ctrl-C 130, SIGTERM 143; a
    traceback is shown only with ``--debug``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug", False))
        _configure_logging(debug)
        try:
            return fn(*args, **kwargs)
        except RegsweepError as exc:
            if debug:
                err.print(traceback.format_exc(), markup=False, highlight=False)
            for line in str(exc).splitlines():
                err.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print(
                "interrupted: the running trial was marked failed and queued again; "
                "run the same command to resume"
            )
            raise typer.Exit(130) from None
        except Terminated:
            err.print("terminated (SIGTERM): the running trial was marked failed and queued again")
            raise typer.Exit(143) from None

    app.command()(wrapper)
    return fn


def _configure_logging(debug: bool) -> None:
    optuna.logging.set_verbosity(logging.DEBUG if debug else logging.WARNING)
    if not debug:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def sweep_flags(
    storage: str | None,
    study: str | None,
    n_trials: int | None = None,
    timeout: float | None = None,
    pack: int | None = None,
) -> dict[str, object]:
    return {
        "study.storage": storage,
        "study.name": study,
        "study.n_trials": n_trials,
        "study.timeout": timeout,
        "study.pack": pack,
    }


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
        from regsweep.pool import run_pool

        study_obj, outcome = run_pool(
            config, sweep, workers=workers, sets=set_ or [], debug=debug, console=err
        )
    else:
        from regsweep.launch import launch as launch_sweep  # imports PyTorch: only when training

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
    from regsweep.launch import launch as launch_sweep

    study_obj, outcome = launch_sweep(config, console=err, worker=True)
    print_summary(study_obj, outcome, config)


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
    debug: DebugOpt = False,
) -> None:
    """Serve optuna-dashboard on the study's storage (no login: keep it on 127.0.0.1)."""
    from regsweep.dashboard import serve

    serve(locate(sweep, storage, study), host=host, port=port, console=err)


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
        acc = best.user_attrs.get("best_val_accuracy")
        table.add_row(
            "best",
            f"trial {best.number}: val_loss {best.value:.4f}"
            + (f", val_acc {acc:.2%}" if isinstance(acc, float) else ""),
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
    from regsweep.study import build_pruner, build_sampler, stored_config

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
    for key, fmt in (
        ("best_val_accuracy", "{:.2%}"),
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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 Ctrl-C, 143 SIGTERM)."""
    try:
        result = app(
            args=sys.argv[1:] if argv is None else argv,
            prog_name="regsweep",
            standalone_mode=False,  # so that usage errors come back here, see below
        )
    except typer.Abort:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        # Click's own errors (bad option value, unknown command, missing argument), which
        # Typer would draw as a multi-line box; bad input gets one line everywhere. Typer
        # vendors Click in recent releases, so they are recognized by their interface.
        exit_code = getattr(exc, "exit_code", None)
        if not (hasattr(exc, "format_message") and isinstance(exit_code, int)):
            raise
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "regsweep"
        message = exc.format_message()
        if message:  # empty after `regsweep` alone, which has printed the help instead
            err.print(
                f"error: {command}: {message} (see {command} --help)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        return exit_code
    return result if isinstance(result, int) else 0


def run() -> NoReturn:
    """The console script: run the CLI and exit with its status.

    After Ctrl-C or SIGTERM the process ends with ``os._exit``: the interrupted trial is
    already told to the storage, and letting the interpreter shut down normally can turn
    the status into death by SIGINT (-2) instead of 130, when the signal's
    KeyboardInterrupt passed through C code that records it as unhandled.
    """
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


from regsweep import cli_insight  # noqa: E402,F401  (report, ablate, export)

if __name__ == "__main__":
    run()
