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
from regsweep.sweep.placement import slurm_text

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
        # regsweep watch: in a log, a line for each trial seen starting or going stale.
        self.log_running = False
        self._announced: set[int] = set()
        self._stale: set[int] = set()

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

    def show_running(
        self,
        trials: list[FrozenTrial],
        heartbeat_ages: dict[int, float] | None = None,
        grace_s: float | None = None,
    ) -> None:
        """The trials the workers are running now: each with its worker (and Slurm job),
        its last epoch and validation loss, and a flag on one whose heartbeat is older
        than ``grace_s`` (its worker may be gone; the next worker to look retries it).

        In a log, with ``log_running``, one line when a trial starts and when its
        heartbeat goes stale or comes back, rather than a line per epoch.
        """
        ages = heartbeat_ages or {}
        stale = {
            t.number for t in trials if grace_s is not None and ages.get(t.number, 0.0) > grace_s
        }
        lines = [
            running_line(t, self.max_epochs, ages.get(t.number) if t.number in stale else None)
            for t in trials
        ]
        self.current = "running: none" if not lines else "running:\n  " + "\n  ".join(lines)
        if self._live is None and self.log_running:
            for t in trials:
                if t.number not in self._announced:
                    self._announced.add(t.number)
                    self.console.print(
                        f"trial {t.number:>4} running  on {who_ran(t)}", highlight=False
                    )
            for number in sorted(stale - self._stale):
                self.console.print(
                    f"trial {number:>4} no heartbeat for {ages[number]:.0f} s (grace period "
                    f"{grace_s:g} s): its worker may be gone; the next worker to take a trial "
                    "fails it and queues it again",
                    highlight=False,
                    soft_wrap=True,
                )
            running = {t.number for t in trials}
            for number in sorted((self._stale - stale) & running):
                self.console.print(f"trial {number:>4} heartbeat again", highlight=False)
        self._stale = stale
        self._refresh()

    def waiting_for_others(self, running: int) -> None:
        text = f"waiting for {running} trial(s) running in other workers"
        if self._live is None and self.current != text:
            self.console.print(text, highlight=False)
        self.current = text
        self._refresh()

    def preload(self, finished: list[FrozenTrial]) -> None:
        """Count trials that finished before the display started (regsweep watch), and
        take the best of them, without a line for each."""
        for trial in finished:
            if trial.state in self.counts:
                self.counts[trial.state] += 1
            self._note_best(trial)
        self._bar.update(self._task, counts=self._counts_text())
        self._refresh()

    def _note_best(self, trial: FrozenTrial) -> None:
        if (
            trial.state == TrialState.COMPLETE
            and trial.value is not None
            and (self.best is None or self.best.value is None or trial.value < self.best.value)
        ):
            self.best = trial

    def trial_finished(self, trial: FrozenTrial) -> None:
        if trial.state in self.counts:
            self.counts[trial.state] += 1
        self._note_best(trial)
        self._bar.update(self._task, advance=1, counts=self._counts_text())
        if self._live is None:
            self.console.print(trial_line(trial), highlight=False, soft_wrap=True)
        self._refresh()


def who_ran(trial: FrozenTrial) -> str:
    """``host:pid`` of the worker, with its Slurm job where it ran under Slurm."""
    worker = str(trial.user_attrs.get("worker", "?"))
    slurm = slurm_text(trial.user_attrs)
    return f"{worker} ({slurm})" if slurm else worker


def running_line(trial: FrozenTrial, max_epochs: int, stale_for: float | None = None) -> str:
    """``#12 epoch 5/20  val_loss 0.3121  on host:pid (slurm 1234_2)``, flagged if stale."""
    steps = trial.intermediate_values
    epoch = max(steps, default=0)
    loss = f"  val_loss {steps[epoch]:.4f}" if steps else ""
    flag = f"  [no heartbeat for {stale_for:.0f} s]" if stale_for is not None else ""
    return f"#{trial.number} epoch {epoch}/{max_epochs}{loss}  on {who_ran(trial)}{flag}"


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
