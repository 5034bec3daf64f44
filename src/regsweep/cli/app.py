"""The ``regsweep`` application: its shared options, error handling and exit statuses.

Commands live in their own modules (sweep, study, insight), registered with :func:`command`.
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
from rich.console import Console

from regsweep.errors import RegsweepError
from regsweep.signals import Terminated, requeued_by

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
        except KeyboardInterrupt as exc:
            err.print(f"interrupted: {_what_was_requeued(exc)}; run the same command to resume")
            raise typer.Exit(130) from None
        except Terminated as exc:
            err.print(f"terminated (SIGTERM): {_what_was_requeued(exc)}")
            raise typer.Exit(143) from None

    app.command()(wrapper)
    return fn


def _what_was_requeued(exc: BaseException) -> str:
    numbers = requeued_by(exc)
    if numbers is None:  # stopped before any trial loop ran (loading data) or in a pool
        return "no trial of this process was left running"
    if not numbers:
        return "no trial was running"
    listed = ", ".join(str(n) for n in numbers)
    return (
        f"trial {listed} marked failed and queued again"
        if len(numbers) == 1
        else (f"trials {listed} marked failed and queued again")
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes, not as it was when the
    handler was made: main() may run more than once in one process (the tests do)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it


def _configure_logging(debug: bool) -> None:
    optuna.logging.set_verbosity(logging.DEBUG if debug else logging.WARNING)
    # regsweep's own notes from deep inside a run (a trial failed elsewhere, a heartbeat
    # that fails): one line each on stderr, like errors.
    logger = logging.getLogger("regsweep")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
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
