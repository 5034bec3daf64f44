"""Ablation: retrain the best config with each regularizer removed, over several seeds.

regsweep ablate sweeps/mnist.yaml --seeds 3

Every variant is trained with the same seeds (a paired comparison), in worker
processes, through :func:`regsweep.sweep.objective.train_config`: the very code a trial runs.
The result is stored with the study, so ``report`` and optuna-dashboard show it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import optuna

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.data.tasks import LOWER_IS_BETTER, is_percent, metric_names
from regsweep.insight.studyview import effective, off_values, require_best, require_config

ABLATION_ATTR = "regsweep_ablation"
# The same table as plain lines: optuna-dashboard shows study user attributes verbatim.
ABLATION_TABLE_ATTR = "regsweep_ablation_table"
# The metric names and directions of each task live in regsweep.data.tasks; a stored
# ablation lists its own (result["metrics"]); these are the classification ones.
METRICS: tuple[str, ...] = metric_names("classification")
LABELS = {
    "dropout": "dropout",
    "weight_decay": "weight decay",
    "l1": "L1",
    "batch_norm": "batch norm",
    "patience": "early stopping",
}
# Mixed into the study seed so ablation seeds never coincide with trial seeds.
_SEED_SALT = 0xAB1A7E


@dataclass(frozen=True)
class Variant:
    key: str  # best, no_dropout, ..., none
    label: str
    params: dict[str, Any]


def variants(best_params: dict[str, Any], max_epochs: int) -> list[Variant]:
    """The best config, the best config without each regularizer in turn, and none at all."""
    best = _complete(best_params)
    off = off_values(max_epochs)
    rows = [Variant("best", "best config", best)]
    rows += [
        Variant(f"no_{name}", f"no {LABELS[name]}", {**best, name: off[name]})
        for name in REGULARIZERS
    ]
    rows.append(Variant("none", "no regularization", {**best, **off}))
    return rows


def _complete(params: dict[str, Any]) -> dict[str, Any]:
    reg = Regularization.from_params(params)
    return {name: getattr(reg, name) for name in REGULARIZERS}


def ablation_seeds(study_seed: int, n: int) -> list[int]:
    return [
        int(np.random.SeedSequence([study_seed, _SEED_SALT, i]).generate_state(1)[0])
        for i in range(n)
    ]


# Worker side ----------------------------------------------------------------------------


def _init_worker(threads: int) -> None:
    import torch

    # Several processes each using every core would fight over them and all run slower.
    torch.set_num_threads(threads)


def retrain(config_json: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one variant with one seed; returns its metrics and learning curve."""
    # Imported here: PyTorch loads in seconds, and the report only needs this module's tables.
    from regsweep.data.splits import load_splits, resolve_device
    from regsweep.engine.fit import evaluate
    from regsweep.sweep.objective import train_config

    config = SweepConfig.model_validate_json(config_json)
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    reg = Regularization.from_params(params)
    # Early stopping is two things: stopping, and going back to the best epoch. Without
    # it a model is what its last epoch left, so that is what is measured; otherwise the
    # row without early stopping could never come out worse than the best row.
    early_stopping = reg.patience < config.train.max_epochs
    model, result = train_config(config, splits, reg, seed, restore_best=early_stopping)
    if early_stopping:
        val_loss, val_accuracy = result.best_val_loss, result.best_val_accuracy
    else:
        val_loss, val_accuracy = result.history[-1].val_loss, result.history[-1].val_accuracy
    run: dict[str, Any] = {
        "seed": seed,
        **{name: None for name in metric_names(splits.task, ("test",))},
        **splits.scores("val", val_loss, val_accuracy),
        "weights": "best epoch" if early_stopping else "last epoch",
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_loss_curve": [m.train_loss for m in result.history],
        "val_loss_curve": [m.val_loss for m in result.history],
    }
    if splits.test_x is not None and splits.test_y is not None:
        run.update(splits.scores("test", *evaluate(model, splits.test_x, splits.test_y)))
    return run


# Parent side ----------------------------------------------------------------------------

RunDone = Callable[[Variant, dict[str, Any]], None]


def run_ablation(
    study: optuna.Study,
    *,
    n_seeds: int = 3,
    workers: int | None = None,
    on_run: RunDone | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Retrain every variant of the best trial with ``n_seeds`` seeds; store and return it.

    Variants that equal another (a regularizer the best config already had off) are
    trained once and share their numbers.
    """
    from regsweep.data.splits import load_splits, resolve_device

    config = require_config(study)
    best = require_best(study)
    max_epochs = config.train.max_epochs
    rows = variants(best.params, max_epochs)
    seeds = ablation_seeds(config.study.seed, n_seeds)
    # Fail fast on bad data before any worker starts.
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    has_test = splits.test_x is not None

    unique: dict[tuple[Any, ...], Variant] = {}
    for variant in rows:
        unique.setdefault(effective(variant.params, max_epochs), variant)
    jobs = [(variant, seed) for variant in unique.values() for seed in seeds]
    if on_start is not None:
        on_start(len(jobs))
    runs = _run_jobs(config, jobs, workers, on_run)

    result = summarize(
        rows=rows,
        runs_of={key: runs[v.key] for key, v in unique.items()},
        same_as={
            v.key: unique[effective(v.params, max_epochs)].key
            for v in rows
            if unique[effective(v.params, max_epochs)].key != v.key
        },
        max_epochs=max_epochs,
        metrics=metric_names(splits.task),
    )
    result.update(
        trial=best.number,
        best_value=best.value,
        seeds=seeds,
        has_test=has_test,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    study.set_user_attr(ABLATION_ATTR, result)
    study.set_user_attr(ABLATION_TABLE_ATTR, table_lines(result))
    return result


def _run_jobs(
    config: SweepConfig,
    jobs: list[tuple[Variant, int]],
    workers: int | None,
    on_run: RunDone | None,
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {variant.key: [] for variant, _ in jobs}
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    config_json = config.model_dump_json()

    def record(variant: Variant, run: dict[str, Any]) -> None:
        runs[variant.key].append(run)
        if on_run is not None:
            on_run(variant, run)

    if n_workers == 1:
        for variant, seed in jobs:
            record(variant, retrain(config_json, variant.params, seed))
    else:
        import torch

        threads = max(1, torch.get_num_threads() // n_workers)
        # spawn, not fork: a forked copy of a process that already ran torch can deadlock.
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads,),
        ) as pool:
            futures: dict[Future[dict[str, Any]], Variant] = {
                pool.submit(retrain, config_json, variant.params, seed): variant
                for variant, seed in jobs
            }
            try:
                for future in as_completed(futures):
                    record(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    position = {seed: i for i, seed in enumerate(dict.fromkeys(seed for _, seed in jobs))}
    for key in runs:
        runs[key].sort(key=lambda run: position[run["seed"]])  # the order seeds were given
    return runs


def summarize(
    *,
    rows: list[Variant],
    runs_of: dict[tuple[Any, ...], list[dict[str, Any]]],
    same_as: dict[str, str],
    max_epochs: int,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, Any]:
    """Mean and standard deviation per variant and metric, differences from the best row.

    A difference is marked when it is larger than the seed-to-seed spread: the two
    rows' standard deviations added (their one-sd bars do not overlap). One seed has
    no spread, so nothing is marked then.
    """
    out_rows: list[dict[str, Any]] = []
    best_stats: dict[str, tuple[float, float]] = {}
    curves: dict[str, Any] = {}
    for variant in rows:
        runs = runs_of[effective(variant.params, max_epochs)]
        stats = {metric: _mean_std([run[metric] for run in runs]) for metric in metrics}
        if variant.key == "best":
            best_stats = {m: ms for m, ms in stats.items() if ms is not None}
        delta: dict[str, float | None] = {}
        marked: dict[str, bool] = {}
        for metric in metrics:
            mine, theirs = stats[metric], best_stats.get(metric)
            if mine is None or theirs is None:
                delta[metric], marked[metric] = None, False
                continue
            delta[metric] = mine[0] - theirs[0]
            marked[metric] = (
                len(runs) > 1
                and variant.key != "best"
                and abs(mine[0] - theirs[0]) > mine[1] + theirs[1]
            )
        mean = {m: (ms[0] if ms else None) for m, ms in stats.items()}
        std = {m: (ms[1] if ms else None) for m, ms in stats.items()}
        out_rows.append(
            {
                "key": variant.key,
                "label": variant.label,
                "params": variant.params,
                "same_as": same_as.get(variant.key),
                "runs": [
                    {k: v for k, v in run.items() if not k.endswith("_curve")} for run in runs
                ],
                "mean": mean,
                "std": std,
                "delta": delta,
                "marked": marked,
            }
        )
        if variant.key in ("best", "none") and runs:
            curves[variant.key] = {
                "seed": runs[0]["seed"],
                "train_loss": runs[0]["train_loss_curve"],
                "val_loss": runs[0]["val_loss_curve"],
            }
    return {"metrics": list(metrics), "rows": out_rows, "curves": curves}


def _mean_std(values: list[float | None]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value); None when nothing was measured."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else 0.0


def stored_ablation(study: optuna.Study) -> dict[str, Any] | None:
    value = study.user_attrs.get(ABLATION_ATTR)
    return value if isinstance(value, dict) else None


def format_cell(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    """``0.2345 ± 0.0031``, accuracies as percentages; ``n/a`` when not measured."""
    mean, std = row["mean"][metric], row["std"][metric]
    if mean is None:
        return "n/a"
    if is_percent(metric):
        return f"{mean:.{digits - 2}%} ± {std:.{digits - 2}%}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_delta(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    """The difference from the best row, ``*`` when larger than the seed spread."""
    delta = row["delta"][metric]
    if delta is None or row["key"] == "best":
        return ""
    text = f"{delta:+.{digits - 2}%}" if is_percent(metric) else f"{delta:+.{digits}f}"
    return text + (" *" if row["marked"][metric] else "")


def verdict(row: dict[str, Any], metric: str) -> str:
    """``worse`` / ``better`` than the best row, for marked differences only."""
    delta = row["delta"][metric]
    if not row["marked"][metric] or delta is None or math.isclose(delta, 0.0):
        return ""
    worse = delta > 0 if LOWER_IS_BETTER[metric] else delta < 0
    return "worse" if worse else "better"


def table_lines(result: dict[str, Any]) -> list[str]:
    """The ablation as one line per variant, for optuna-dashboard's study attributes."""
    lines = [
        f"retrained trial {result['trial']} with {len(result['seeds'])} seeds; "
        "* = difference from best larger than the seed spread"
    ]
    for row in result["rows"]:
        parts = [f"{row['label']}:"]
        for metric in result.get("metrics", METRICS):
            if row["mean"][metric] is not None:
                parts.append(f"{metric} {format_cell(row, metric)} {format_delta(row, metric)}")
        if row["same_as"]:
            parts.append(f"(same as {row['same_as']})")
        lines.append(" ".join(p.strip() for p in parts))
    return lines
