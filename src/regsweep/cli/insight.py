"""``regsweep report``, ``ablate`` and ``export``: answers from a finished study.

regsweep report sweeps/mnist.yaml -o report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regsweep.cli.app import DebugOpt, OptionalSweepArg, StorageOpt, StudyOpt, command, err, out
from regsweep.sweep.locate import locate, open_existing

if TYPE_CHECKING:
    from regsweep.insight.ablation import Variant
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
SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, help="Paired seeds per variant.")]
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


@command
def ablate(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    seeds: SeedsOpt = 3,
    workers: WorkersOpt = None,
    solo: SoloOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config with each regularizer removed, over paired seeds: the verdict."""
    from regsweep.insight.ablation import run_ablation
    from regsweep.insight.studyview import require_best, require_config
    from regsweep.insight.verdict import verdict_markdown

    study_obj, _ = open_existing(locate(sweep, storage, study))
    require_config(study_obj)
    best = require_best(study_obj)
    engine: Engine = "solo" if solo else "packed"
    err.print(
        f"ablation of trial {best.number} of {study_obj.study_name}: 7 variants × {seeds} "
        f"paired seeds ({'one model at a time' if solo else 'one pack per seed'})",
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

    with progress:
        result = run_ablation(
            study_obj,
            n_seeds=seeds,
            workers=workers,
            on_run=on_run,
            on_start=on_start,
            engine=engine,
        )
    from regsweep.insight.dashboard import save_verdict_note

    save_verdict_note(study_obj, verdict_markdown(result, study_obj.study_name))
    _print_verdict(result)
    out.print(ablation_table(result))
    out.print(
        "difference = metric(variant) − metric(best config), paired per seed, [95% CI]; "
        "stored with the study (see `regsweep report`, and the study's note in "
        "optuna-dashboard)",
        highlight=False,
    )
    err.print(
        "note: rows without early stopping are measured on their last epoch's weights, "
        "the others on their best epoch's"
    )
    if not result["has_test"]:
        err.print("note: the data set has no test split; only validation numbers were measured")


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


COLOURS = {"helps": "green", "hurts": "red", "no measurable effect": "yellow"}


def _print_verdict(result: dict[str, Any]) -> None:
    from regsweep.insight.verdict import findings

    out.print(f"[bold]verdict[/] (trial {result['trial']}, {len(result['seeds'])} paired seeds)")
    for finding in findings(result):
        colour = COLOURS.get(finding.verdict or "", "dim")
        out.print(f"[{colour}]■[/] {finding.sentence}", highlight=False, soft_wrap=True)
        if finding.evidence:
            out.print(f"    [dim]why:[/] {finding.evidence}", highlight=False, soft_wrap=True)
    out.print()


@command
def paths(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    seeds: SeedsOpt = 3,
    workers: WorkersOpt = None,
    solo: SoloOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config along a grid of each varied regularizer: dose-response paths."""
    from regsweep.insight.metrics import HEADLINE, label
    from regsweep.insight.paths import run_paths
    from regsweep.insight.studyview import require_best, require_config

    study_obj, _ = open_existing(locate(sweep, storage, study))
    require_config(study_obj)
    best = require_best(study_obj)
    err.print(
        f"dose-response paths of trial {best.number} of {study_obj.study_name}: "
        f"{seeds} paired seeds",
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
            n_seeds=seeds,
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
            effect = point_effect(result, point["key"], HEADLINE)
            mark = "*" if point["is_best"] else ""
            cells.append(f"{point['label']}{mark} {format_effect(effect, HEADLINE, 3)}")
        out.print(f"[bold]{name}[/]: " + " · ".join(cells), highlight=False, soft_wrap=True)
    out.print(
        f"{label(HEADLINE)} − the best config's, paired per seed [95% CI]; * = the best config's "
        "value; plotted by `regsweep report`",
        highlight=False,
    )


def ablation_table(result: dict[str, Any]) -> Table:
    """Mean per variant; the second line of a cell is the paired difference from best [CI]."""
    from regsweep.insight.ablation import METRICS, effects_of, format_effect, format_mean
    from regsweep.insight.effects import classify
    from regsweep.insight.metrics import LOWER_IS_BETTER

    effects = effects_of(result)
    table = Table(
        title=f"ablation of trial {result['trial']} ({len(result['seeds'])} paired seeds, mean)",
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
            word = classify(effect, LOWER_IS_BETTER[metric])
            colour = {"helps": "red", "hurts": "green"}.get(word, "dim")
            delta = format_effect(effect, metric, digits=3)
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
