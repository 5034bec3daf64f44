"""``regsweep report``, ``ablate`` and ``export``: answers from a finished study.

regsweep report sweeps/mnist.yaml -o report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regsweep.cli.app import DebugOpt, OptionalSweepArg, StorageOpt, StudyOpt, command, err, out
from regsweep.data.tasks import STAGE_METRICS, format_metric
from regsweep.insight.ablation import (
    METRICS,
    Variant,
    format_cell,
    format_delta,
    run_ablation,
    verdict,
)
from regsweep.insight.outputs import prepare_file
from regsweep.insight.report import write_report
from regsweep.insight.studyview import require_best, require_config
from regsweep.sweep.locate import locate, open_existing

OutputFileOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Where to write the HTML report.")
]
OutputDirOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Folder for model.pt, config.yaml, metrics.json.")
]
SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, help="Seeds per variant.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Parallel worker processes (default: one per core)."),
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
    debug: DebugOpt = False,
) -> None:
    """Write one self-contained HTML report of a study (opens offline)."""
    prepare_file(output, "-o")
    study_obj, _ = open_existing(locate(sweep, storage, study))
    write_report(study_obj, output)
    out.print(f"report of study {study_obj.study_name} written to {output}", highlight=False)


@command
def ablate(
    sweep: OptionalSweepArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    seeds: SeedsOpt = 3,
    workers: WorkersOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config with each regularizer removed, over several seeds."""
    study_obj, _ = open_existing(locate(sweep, storage, study))
    require_config(study_obj)
    best = require_best(study_obj)
    err.print(
        f"ablation of trial {best.number} of {study_obj.study_name}: 7 variants × {seeds} seeds",
        highlight=False,
    )
    progress = Progress(
        TextColumn("[bold]ablate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    task = progress.add_task("runs", total=None, last="")

    def on_start(n_runs: int) -> None:
        progress.update(task, total=n_runs)

    def on_run(variant: Variant, run: dict[str, Any]) -> None:
        line = f"{variant.label} (seed {run['seed']}): val_loss {run['val_loss']:.4f}"
        progress.update(task, advance=1, last=line)
        if not err.is_terminal:
            err.print(line, highlight=False)

    with progress:
        result = run_ablation(
            study_obj, n_seeds=seeds, workers=workers, on_run=on_run, on_start=on_start
        )
    out.print(ablation_table(result))
    out.print(
        "* difference from the best row larger than the seed-to-seed spread; stored with "
        "the study (see `regsweep report`)",
        highlight=False,
    )
    err.print(
        "note: rows without early stopping are measured on their last epoch's weights, "
        "the others on their best epoch's"
    )
    if not result["has_test"]:
        err.print("note: the data set has no test split; only validation numbers were measured")


def ablation_table(result: dict[str, Any]) -> Table:
    """Mean ± sd per variant; the second line of a cell is the difference from best."""
    table = Table(
        title=f"ablation of trial {result['trial']} ({len(result['seeds'])} seeds, mean ± sd)",
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
            colour = {"worse": "red", "better": "green"}.get(verdict(row, metric), "dim")
            delta = format_delta(row, metric, digits=3)
            cells.append(f"{format_cell(row, metric, digits=3)}\n[{colour}]{delta}[/]")
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
    debug: DebugOpt = False,
) -> None:
    """Retrain the best config, test it once, write model.pt, config.yaml, metrics.json."""
    study_obj, _ = open_existing(locate(sweep, storage, study))
    metrics = _export_best(study_obj, output, full=full, seed=seed)
    test = metrics["test"]
    scores = ", ".join(
        f"test {name} {format_metric(name, test[name])}"
        for name in STAGE_METRICS[metrics["task"]][1:]
    )
    out.print(
        f"exported trial {metrics['trial']} of {study_obj.study_name} to {output}: "
        f"{scores}, test loss {test['loss']:.4f} (trained on {metrics['trained_on']}, "
        f"seed {metrics['seed']})",
        highlight=False,
    )
    out.print(
        f"load it with: regsweep.load_predictor({str(output)!r}) (raw inputs), "
        f"or regsweep.load_model({str(output)!r}) (the network)",
        highlight=False,
    )


def _export_best(*args: Any, **kwargs: Any) -> Any:
    # Imported on use: export trains a model, and PyTorch takes seconds to import.
    from regsweep.insight.export import export_best

    return export_best(*args, **kwargs)
