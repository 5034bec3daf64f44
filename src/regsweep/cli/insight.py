"""``regsweep report``, ``ablate`` and ``export``: answers from a finished study.

regsweep report sweeps/mnist.yaml -o report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regsweep.cli.app import DebugOpt, OptionalSweepArg, StorageOpt, StudyOpt, command, err, out
from regsweep.sweep.locate import StudyRef, locate, open_existing

if TYPE_CHECKING:
    from regsweep.config.schema import VerdictConfig
    from regsweep.insight.ablation import Look, Variant
    from regsweep.insight.retrain import Engine

# The insight modules are imported inside each command: they pull in SciPy, scikit-learn
# (through Optuna's importances) and Plotly, seconds that `regsweep worker`, `launch`
# and every bad-input error would otherwise pay at start-up.

OutputFileOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Where to write the HTML report.")
]
OutputDirOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Folder for model.pt, config.yaml, metrics.json.")
]
RepeatsOpt = Annotated[
    int | None,
    typer.Option(
        "--repeats",
        min=2,
        metavar="K",
        help="Exactly K repetitions, one look (default: add repetitions until decided).",
    ),
]
MaxRepeatsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-repeats",
        min=2,
        max=1000,
        metavar="N",
        help="Add repetitions until every effect is decided, at most N (verdict.max_repeats).",
    ),
]
MinEffectOpt = Annotated[
    str | None,
    typer.Option(
        "--min-effect",
        metavar="X",
        help="Smallest effect that matters: a loss difference (0.01) or a share of the best "
        "config's loss ('5%'); verdict.min_effect.",
    ),
]
# The older name of --repeats, kept for scripts: a repetition now also draws fresh rows.
SeedsOpt = Annotated[int | None, typer.Option("--seeds", min=2, hidden=True)]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Parallel worker processes, one seed's pack each (default: cores)."
    ),
]
SoloOpt = Annotated[
    bool,
    typer.Option("--solo", help="Train one model at a time instead of one pack per seed."),
]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        metavar="DIR",
        help="Artifact store folder (default: beside a SQLite database, else none).",
    ),
]
FullOpt = Annotated[
    bool, typer.Option("--full", help="Train on train + validation (for the best epoch count).")
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Training seed (default: the best trial's own).")
]


@command
def report(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    output: OutputFileOpt = Path("report.html"),
    artifacts: ArtifactsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write one self-contained HTML report of a study (opens offline)."""
    from regsweep.insight.outputs import prepare_file
    from regsweep.insight.report import write_report

    prepare_file(output, "-o")
    ref = locate(sweep, storage, study)
    study_obj, _ = open_existing(ref)
    write_report(study_obj, output)
    out.print(f"report of study {study_obj.study_name} written to {output}", highlight=False)
    _publish(study_obj, ref.url, artifacts, [output], "the report")


def _publish(study_obj: Any, url: str, folder: Path | None, files: list[Path], what: str) -> None:
    """Upload ``files`` as study artifacts for optuna-dashboard, where there is a store."""
    from regsweep.insight.dashboard import artifact_store, upload

    store = artifact_store(url, folder)
    if store is None:
        err.print(
            f"note: {what} is not uploaded to optuna-dashboard: no artifact store for this "
            "storage (give --artifacts DIR)",
            highlight=False,
        )
        return
    upload(study_obj, store.store, files)
    err.print(f"{what} uploaded as study artifacts to {store.folder}", highlight=False)


def _verdict_settings(
    ref: StudyRef,
    study_obj: Any,
    *,
    max_repeats: int | None = None,
    min_effect: str | None = None,
) -> VerdictConfig:
    """The ``verdict`` section: a flag, else the sweep file given now, else the study's own."""
    from regsweep.config.schema import parse_min_effect
    from regsweep.errors import ConfigError
    from regsweep.insight.studyview import require_config

    verdict = ref.config.verdict if ref.config is not None else require_config(study_obj).verdict
    update: dict[str, Any] = {}
    if max_repeats is not None:
        update["max_repeats"] = max_repeats
    if min_effect is not None:
        try:
            number = float(min_effect)
        except ValueError:
            number = None
        try:
            update["min_effect"] = parse_min_effect(number if number is not None else min_effect)
        except ValueError as exc:
            raise ConfigError(f"--min-effect: {exc}") from None
    return verdict.model_copy(update=update)


def _repeats(repeats: int | None, seeds: int | None) -> int | None:
    if seeds is not None:
        err.print(
            "warning: --seeds is now --repeats (each repetition also draws fresh rows)",
            highlight=False,
        )
        return repeats if repeats is not None else seeds
    return repeats


@command
def ablate(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    repeats: RepeatsOpt = None,
    max_repeats: MaxRepeatsOpt = None,
    min_effect: MinEffectOpt = None,
    workers: WorkersOpt = None,
    solo: SoloOpt = False,
    seeds: SeedsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config with each regularizer removed, over repetitions, until decided."""
    from regsweep.insight.ablation import plan_for, run_ablation
    from regsweep.insight.studyview import require_best, require_config
    from regsweep.insight.verdict import verdict_markdown

    ref = locate(sweep, storage, study)
    study_obj, _ = open_existing(ref)
    require_config(study_obj)
    best = require_best(study_obj)
    verdict = _verdict_settings(ref, study_obj, max_repeats=max_repeats, min_effect=min_effect)
    repeats = _repeats(repeats, seeds)
    plan = plan_for(verdict, repeats)
    engine: Engine = "solo" if solo else "packed"
    how = (
        f"{repeats} repetitions"
        if repeats is not None
        else f"repetitions in rounds of {verdict.folds} until every effect is decided, at most "
        f"{verdict.max_repeats}"
    )
    err.print(
        f"ablation of trial {best.number} of {study_obj.study_name}: 7 variants, {how} "
        f"({'one model at a time' if solo else 'one pack per repetition'})",
        highlight=False,
    )
    progress = _progress("ablate")
    task = progress.add_task("runs", total=None, last="")

    def on_start(n_runs: int) -> None:
        progress.update(task, total=n_runs)

    def on_run(variant: Variant, run: dict[str, Any]) -> None:
        progress.update(task, advance=1, last=_run_line(variant.label, run))
        if not err.is_terminal:
            err.print(_run_line(variant.label, run), highlight=False)

    def on_look(look: Look) -> None:
        # Above the live progress bar on a terminal; a plain line in a log.
        progress.console.print(
            _look_line(look, plan.looks), highlight=False, markup=False, soft_wrap=True
        )

    with progress:
        result = run_ablation(
            study_obj,
            verdict=verdict,
            repeats=repeats,
            workers=workers,
            on_run=on_run,
            on_look=on_look,
            on_start=on_start,
            engine=engine,
        )
    from regsweep.insight.dashboard import save_verdict_note

    save_verdict_note(study_obj, verdict_markdown(result, study_obj.study_name))
    _print_verdict(result)
    out.print(ablation_table(result))
    out.print(
        "difference = metric(variant) − metric(best config) [95% CI, not adjusted]: "
        "assessment and validation paired per repetition (corrected resampled t), test per "
        "test row; stored with the study (see `regsweep report`, and the study's note in "
        "optuna-dashboard)",
        highlight=False,
    )
    if not result["has_test"]:
        err.print("note: the data set has no test split; there is no independent test check")


def _look_line(look: Look, planned: tuple[int, ...]) -> str:
    """``look 1 of 6 (5 repetitions): all regularization helps, L1 negligible; undecided:
    dropout, ... - adding 5 more``."""
    from regsweep.insight.ablation import ALL, LABELS

    def name(key: str) -> str:
        return "all regularization" if key == ALL else LABELS[key]

    decided = [f"{name(k)} {d}" for k, d in look.decisions.items() if d != "undecided"]
    open_ = [name(k) for k, d in look.decisions.items() if d == "undecided"]
    parts = [f"look {look.index} of {look.of} ({look.repetitions} repetitions)"]
    parts.append(", ".join(decided) if decided else "nothing decided yet")
    if open_:
        parts.append(f"undecided: {', '.join(open_)}")
    line = "; ".join(parts)
    ending = {
        "decided": ": every effect decided",
        "cap": ": --max-repeats reached",
        "futile": ": stopping, since up to --max-repeats repetitions could not decide the rest at "
        "the spread seen",
        "fixed": "",
    }
    if look.stopped:
        return line + ending[look.stopped]
    return line + f": adding {planned[look.index] - look.repetitions} more"


def _run_line(name: str, run: dict[str, Any]) -> str:
    if run.get("diverged"):
        return f"{name} (seed {run['seed']}): diverged"
    return f"{name} (seed {run['seed']}): val_loss {run['val_loss']:.4f}"


def _progress(name: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )


COLOURS = {
    "helps": "green",
    "hurts": "red",
    "negligible": "blue",
    "real but negligible": "blue",
    "undecided": "yellow",
}


def _print_verdict(result: dict[str, Any]) -> None:
    from regsweep.insight.verdict import (
        design_line,
        epochs_line,
        findings,
        reference_line,
        unit,
    )

    out.print(f"[bold]verdict[/] (trial {result['trial']}, {unit(result, len(result['seeds']))})")
    for finding in findings(result):
        colour = COLOURS.get(finding.word, "dim")
        tag = escape(f"[{finding.word}]")
        out.print(
            f"[{colour}]■ {tag}[/] {escape(finding.sentence)}", highlight=False, soft_wrap=True
        )
        if finding.evidence:
            out.print(
                f"    [dim]why:[/] {escape(finding.evidence)}", highlight=False, soft_wrap=True
            )
    reference = reference_line(result)
    if reference:
        out.print(f"[cyan]◆[/] {escape(reference)}", highlight=False, soft_wrap=True)
    cut_short = epochs_line(result)
    if cut_short:
        out.print(f"[yellow]![/] {escape(cut_short)}", highlight=False, soft_wrap=True)
    out.print(f"[dim]{escape(design_line(result))}[/]", highlight=False, soft_wrap=True)
    out.print()


@command
def paths(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    repeats: RepeatsOpt = None,
    workers: WorkersOpt = None,
    solo: SoloOpt = False,
    seeds: SeedsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config along a grid of each varied regularizer: dose-response paths."""
    from regsweep.insight.metrics import HEADLINE, label
    from regsweep.insight.paths import default_repeats, run_paths
    from regsweep.insight.studyview import require_best, require_config

    ref = locate(sweep, storage, study)
    study_obj, _ = open_existing(ref)
    config = require_config(study_obj)
    best = require_best(study_obj)
    verdict = _verdict_settings(ref, study_obj)
    repeats = _repeats(repeats, seeds)
    n = repeats if repeats is not None else default_repeats(config)
    err.print(
        f"dose-response paths of trial {best.number} of {study_obj.study_name}: "
        f"{n} repetitions (the same rows and seeds as ablate's first {n})",
        highlight=False,
    )
    progress = _progress("paths")
    task = progress.add_task("runs", total=None, last="")

    def on_start(n_runs: int) -> None:
        progress.update(task, total=n_runs)

    def on_run(key: str, run: dict[str, Any]) -> None:
        progress.update(task, advance=1, last=_run_line(key, run))
        if not err.is_terminal:
            err.print(_run_line(key, run), highlight=False)

    with progress:
        result = run_paths(
            study_obj,
            repeats=n,
            verdict=verdict,
            workers=workers,
            on_start=on_start,
            on_run=on_run,
            engine="solo" if solo else "packed",
        )
    from regsweep.insight.ablation import format_effect
    from regsweep.insight.paths import point_effect

    for name, points in result["paths"].items():
        cells = []
        for point in points:
            effect = point_effect(result, point["key"])
            mark = "*" if point["is_best"] else ""
            cells.append(f"{point['label']}{mark} {format_effect(effect, HEADLINE, 3)}")
        out.print(f"[bold]{name}[/]: " + escape(" · ".join(cells)), highlight=False, soft_wrap=True)
    out.print(
        f"{label(HEADLINE)} − the best config's, paired per repetition [95% CI, corrected "
        "resampled t, per point]; * = the best config's value; plotted by `regsweep report`",
        highlight=False,
        markup=False,
    )


def ablation_table(result: dict[str, Any]) -> Table:
    """Mean per variant; the second line of a cell is the difference from best [CI]."""
    from regsweep.insight.ablation import METRICS, effects_of, format_effect, format_mean
    from regsweep.insight.metrics import LOWER_IS_BETTER
    from regsweep.insight.verdict import unit

    effects = effects_of(result)
    table = Table(
        title=f"ablation of trial {result['trial']} ({unit(result, len(result['seeds']))}, mean)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("variant")
    stored = result.get("metrics", METRICS)  # the study's task's metrics (data/tasks.py)
    metrics = [m for m in stored if result["has_test"] or not m.startswith("test")]
    for metric in metrics:
        table.add_column(metric.replace("_", " "), justify="right")
    for row in result["rows"]:
        cells = [row["label"] + (f"\n(= {row['same_as']})" if row["same_as"] else "")]
        for metric in metrics:
            if row["key"] == "best" or row["same_as"] == "best":
                cells.append(f"{format_mean(row, metric, digits=3)}\n")
                continue
            effect = effects[row["key"]][metric]
            # Removing something that helps makes the metric worse: red.
            colour = "dim"
            if effect.excludes_zero() and effect.mean is not None:
                worse = effect.mean > 0 if LOWER_IS_BETTER[metric] else effect.mean < 0
                colour = "red" if worse else "green"
            delta = escape(format_effect(effect, metric, digits=3))
            cells.append(f"{format_mean(row, metric, digits=3)}\n[{colour}]{delta}[/]")
        table.add_row(*cells)
    return table


@command
def export(
    output: OutputDirOpt,
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    full: FullOpt = False,
    seed: SeedOpt = None,
    artifacts: ArtifactsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config, test it once, write model.pt, config.yaml, metrics.json."""
    ref = locate(sweep, storage, study)
    study_obj, _ = open_existing(ref)
    metrics = _export_best(study_obj, output, full=full, seed=seed)
    trained = f"trained on {metrics['trained_on']}, seed {metrics['seed']}"
    if metrics["test"] is None:
        out.print(
            f"exported trial {metrics['trial']} of {study_obj.study_name} to {output} "
            f"({trained}): the data has no test split, so test metrics are absent; "
            f"{_split_line(metrics['validation'], 'validation')}",
            highlight=False,
        )
    else:
        out.print(
            f"exported trial {metrics['trial']} of {study_obj.study_name} to {output}: "
            f"{_split_line(metrics['test'], 'test')} ({trained})",
            highlight=False,
        )
    out.print(
        f"load it with: regsweep.load_predictor({str(output)!r}) (raw inputs), "
        f"or regsweep.load_model({str(output)!r}) (the network)",
        highlight=False,
    )
    from regsweep.insight.export import CONFIG_FILE, METRICS_FILE, MODEL_FILE, PREPROCESSOR_FILE

    names = (MODEL_FILE, PREPROCESSOR_FILE, CONFIG_FILE, METRICS_FILE)
    files = [output / name for name in names]
    _publish(study_obj, ref.url, artifacts, files, "the model files")


def _split_line(values: dict[str, Any], split: str) -> str:
    """``test loss 0.0812, test accuracy 97.50%`` (or RMSE and R² for regression)."""
    from regsweep.data.tasks import format_metric

    # Formatted as the validation metric of that name is (accuracy as a percentage).
    return ", ".join(
        f"{split} {name} {format_metric(f'val_{name}', values[name])}"
        for name in ("loss", "accuracy", "rmse", "r2")
        if name in values
    )


def _export_best(*args: Any, **kwargs: Any) -> Any:
    # Imported on use: export trains a model, and PyTorch takes seconds to import.
    from regsweep.insight.export import export_best

    return export_best(*args, **kwargs)
