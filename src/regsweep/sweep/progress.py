"""What a user sees while a sweep runs, and the summary after it. Built on Rich."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from regsweep.config.schema import REGULARIZERS
from regsweep.data.tasks import best_scores, format_metric, task_of_attrs
from regsweep.sweep.budget import retried_number

if TYPE_CHECKING:
    from regsweep.engine.fit import EpochMetrics


def format_param(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return f"{name}={value}"
    return f"{name}={value:.3g}"


def format_params(params: dict[str, Any]) -> str:
    return "  ".join(format_param(n, params[n]) for n in REGULARIZERS if n in params)


class SweepProgress:
    """Live trial counts, best trial and the current trial's epochs.

    On a terminal it redraws in place; elsewhere (CI logs, pipes) it prints one
    line per finished trial instead, so logs stay readable.
    """

    def __init__(
        self, console: Console, *, study_name: str, n_trials: int, done: int, max_epochs: int
    ) -> None:
        self.console = console
        self.max_epochs = max_epochs
        self.counts = {TrialState.COMPLETE: 0, TrialState.PRUNED: 0, TrialState.FAIL: 0}
        self.best: FrozenTrial | None = None
        self.current = ""
        self._bar = Progress(
            TextColumn(f"[bold]{study_name}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._bar.add_task(
            "trials", total=n_trials, completed=done, counts=self._counts_text()
        )
        self._live: Live | None = None
        self._last_refresh = 0.0

    def __enter__(self) -> SweepProgress:
        if self.console.is_terminal:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.current = ""  # the last trial's epoch line would read as if it still ran
            self._live.update(self._render())
            self._live.__exit__(None, None, None)

    def _counts_text(self) -> str:
        c = self.counts
        return (
            f"[green]complete {c[TrialState.COMPLETE]}[/] · "
            f"[yellow]pruned {c[TrialState.PRUNED]}[/] · [red]failed {c[TrialState.FAIL]}[/]"
        )

    def _render(self) -> Group:
        best = Text("best: none yet", style="dim")
        if self.best is not None and self.best.value is not None:
            best = Text.assemble(
                ("best ", "bold"),
                (f"{self.best.value:.4f}", "bold cyan"),
                f" (trial {self.best.number})  {format_params(self.best.params)}",
            )
        return Group(self._bar, best, Text(self.current, style="dim"))

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    # RunListener ---------------------------------------------------------------------
    def trial_started(self, trial: optuna.Trial) -> None:
        self.current = f"trial {trial.number}: starting"
        self._refresh()

    def epoch_done(self, trial_number: int, metrics: EpochMetrics) -> None:
        score = (
            f"val_rmse {metrics.val_rmse:.4g}  val_r2 {metrics.val_r2:.3f}"
            if metrics.val_rmse is not None and metrics.val_r2 is not None
            else f"val_acc {metrics.val_accuracy:.2%}"
        )
        self.current = (
            f"trial {trial_number}: epoch {metrics.epoch}/{self.max_epochs}  "
            f"val_loss {metrics.val_loss:.4f}  {score}  ({metrics.seconds:.1f} s/epoch)"
        )
        now = time.monotonic()
        if now - self._last_refresh > 0.2:
            self._last_refresh = now
            self._refresh()

    # Polling (launch --workers) ---------------------------------------------------------
    def set_completed(self, completed: int) -> None:
        """The study's finished trials, as counted by the budget (a retried failure once)."""
        self._bar.update(self._task, completed=completed)
        self._refresh()

    def show_running(self, trials: list[FrozenTrial]) -> None:
        """The trials the workers are running now, with the last epoch each reported."""
        self.current = "running: " + (
            " · ".join(
                f"#{t.number} epoch {max(t.intermediate_values, default=0)}/{self.max_epochs}"
                for t in trials
            )
            or "none"
        )
        self._refresh()

    def waiting_for_others(self, running: int) -> None:
        text = f"waiting for {running} trial(s) running in other workers"
        if self._live is None and self.current != text:
            self.console.print(text, highlight=False)
        self.current = text
        self._refresh()

    def trial_finished(self, trial: FrozenTrial) -> None:
        if trial.state in self.counts:
            self.counts[trial.state] += 1
        if (
            trial.state == TrialState.COMPLETE
            and trial.value is not None
            and (self.best is None or self.best.value is None or trial.value < self.best.value)
        ):
            self.best = trial
        self._bar.update(self._task, advance=1, counts=self._counts_text())
        if self._live is None:
            self.console.print(trial_line(trial), highlight=False, soft_wrap=True)
        self._refresh()


def trial_line(trial: FrozenTrial) -> str:
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    epochs = trial.user_attrs.get("epochs_run", "-")
    reason = trial.user_attrs.get("fail_reason")
    tail = f"  ({reason})" if reason and trial.state == TrialState.FAIL else ""
    return (
        f"trial {trial.number:>4} {trial.state.name.lower():<8} value {value}  "
        f"epochs {epochs}  {format_params(trial.params)}{tail}"
    )


def trial_notes(trials: list[FrozenTrial]) -> dict[int, str]:
    """Why each trial ended as it did, where its state alone does not say, by trial number.

    regsweep records a ``fail_reason`` on every failure it sees (an exception, a NaN
    loss, Ctrl-C, SIGTERM); a failed trial without one was failed by another worker's
    stale-trial check, i.e. its own worker died without a word (SIGKILL, OOM, a lost
    machine).
    """
    retry_of = {t.number: retried_number(t) for t in trials}
    retried_as = {orig: number for number, orig in retry_of.items() if orig is not None}
    notes: dict[int, str] = {}
    for t in trials:
        parts = []
        if retry_of[t.number] is not None:
            parts.append(f"retry of trial {retry_of[t.number]}")
        if t.state == TrialState.FAIL:
            parts.append(
                str(t.user_attrs.get("fail_reason") or "its worker stopped sending heartbeats")
            )
            if t.number in retried_as:
                parts.append(f"retried as trial {retried_as[t.number]}")
        elif t.state == TrialState.COMPLETE and t.user_attrs.get("stopped_early"):
            parts.append(f"stopped early, best epoch {t.user_attrs.get('best_epoch', '?')}")
        if parts:
            notes[t.number] = "; ".join(parts)
    return notes


def trials_table(trials: list[FrozenTrial], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    # A study has one task; its trials' stored scores say which (regression: RMSE and R²).
    regression = any(task_of_attrs(t.user_attrs) == "regression" for t in trials)
    scores = ("val_rmse", "val_r2") if regression else ("val_accuracy",)
    labels = [{"val_accuracy": "val acc"}.get(s, s.replace("_", " ")) for s in scores]
    for column in ("#", "state", "val loss", *labels, "epochs", *REGULARIZERS, "note"):
        table.add_column(column, justify="left" if column in ("state", "note") else "right")
    notes = trial_notes(trials)
    for t in trials:
        best = best_scores(t.user_attrs)
        row = [
            str(t.number),
            t.state.name.lower(),
            f"{t.value:.4f}" if t.value is not None else "-",
            *(format_metric(s, best.get(s)) for s in scores),
            str(t.user_attrs.get("epochs_run", "-")),
        ]
        for name in REGULARIZERS:
            value = t.params.get(name, "-")
            row.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        row.append(notes.get(t.number, ""))
        table.add_row(*row)
    return table
