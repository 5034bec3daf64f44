"""Ablation: retrain the best config with each regularizer removed, over several seeds.

regsweep ablate sweeps/mnist.yaml --seeds 3

For each seed, every variant starts from the same initial weights and sees the same
mini-batch order as the best config (``insight.retrain``: by default one pack per seed,
the packed engine sweeps use), so each regularizer's effect is a paired difference per
seed; ``insight.effects`` turns those into a mean, a 95% confidence interval and a
verdict, and ``insight.verdict`` into sentences. The result is stored with the study, so
``report`` and optuna-dashboard show it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import optuna

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS
from regsweep.insight.effects import Effect, paired_effect
from regsweep.insight.metrics import LOWER_IS_BETTER, METRICS, format_value, metrics_in
from regsweep.insight.retrain import Engine, retrain_solo, run_retrains
from regsweep.insight.studyview import effective, off_values, require_best, require_config

__all__ = ["LOWER_IS_BETTER", "METRICS"]  # the one list of metrics: insight.metrics

ABLATION_ATTR = "regsweep_ablation"
# The same table as plain lines: optuna-dashboard shows study user attributes verbatim.
ABLATION_TABLE_ATTR = "regsweep_ablation_table"
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
    best = complete(best_params)
    off = off_values(max_epochs)
    rows = [Variant("best", "best config", best)]
    rows += [
        Variant(f"no_{name}", f"no {LABELS[name]}", {**best, name: off[name]})
        for name in REGULARIZERS
    ]
    rows.append(Variant("none", "no regularization", {**best, **off}))
    return rows


def complete(params: dict[str, Any]) -> dict[str, Any]:
    """All five regularizers' values, the defaults filled in."""
    reg = Regularization.from_params(params)
    return {name: getattr(reg, name) for name in REGULARIZERS}


def ablation_seeds(study_seed: int, n: int) -> list[int]:
    return [
        int(np.random.SeedSequence([study_seed, _SEED_SALT, i]).generate_state(1)[0])
        for i in range(n)
    ]


def retrain(config_json: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one variant with one seed, one model at a time (see ``retrain.retrain_solo``)."""
    return retrain_solo(config_json, params, seed)


# Parent side ----------------------------------------------------------------------------

RunDone = Callable[[Variant, dict[str, Any]], None]


def run_ablation(
    study: optuna.Study,
    *,
    n_seeds: int = 3,
    workers: int | None = None,
    on_run: RunDone | None = None,
    on_start: Callable[[int], None] | None = None,
    engine: Engine = "packed",
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
    by_key = {v.key: v for v in unique.values()}
    if on_start is not None:
        on_start(len(unique) * len(seeds))
    runs = run_retrains(
        config,
        [(v.key, v.params) for v in unique.values()],
        seeds,
        workers=workers,
        engine=engine,
        on_run=None if on_run is None else (lambda key, run: on_run(by_key[key], run)),
    )
    result = summarize(
        rows=rows,
        runs_of={key: runs[v.key] for key, v in unique.items()},
        same_as={
            v.key: unique[effective(v.params, max_epochs)].key
            for v in rows
            if unique[effective(v.params, max_epochs)].key != v.key
        },
        max_epochs=max_epochs,
    )
    result.update(
        trial=best.number,
        best_value=best.value,
        seeds=seeds,
        has_test=has_test,
        max_epochs=max_epochs,
        engine=engine,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    study.set_user_attr(ABLATION_ATTR, result)
    study.set_user_attr(ABLATION_TABLE_ATTR, table_lines(result))
    return result


def summarize(
    *,
    rows: list[Variant],
    runs_of: dict[tuple[Any, ...], list[dict[str, Any]]],
    same_as: dict[str, str],
    max_epochs: int,
) -> dict[str, Any]:
    """Each variant's runs (seed order) and means; effects are computed on read (effects_of)."""
    out_rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    # The task's metrics (a diverged run has none): classification's if every run diverged.
    measured = metrics_in(run for group in runs_of.values() for run in group) or METRICS
    for variant in rows:
        runs = runs_of[effective(variant.params, max_epochs)]
        out_rows.append(
            {
                "key": variant.key,
                "label": variant.label,
                "params": variant.params,
                "same_as": same_as.get(variant.key),
                "runs": [
                    {k: v for k, v in run.items() if not k.endswith("_curve")} for run in runs
                ],
                "curves": [
                    {"train_loss": run.get("train_loss_curve"), "val_loss": run["val_loss_curve"]}
                    for run in runs
                ],
                "mean": {m: _mean([run.get(m) for run in runs]) for m in measured},
            }
        )
        if variant.key in ("best", "none") and runs:
            curves[variant.key] = {
                "seed": runs[0]["seed"],
                "train_loss": runs[0]["train_loss_curve"],
                "val_loss": runs[0]["val_loss_curve"],
            }
    return {"metrics": list(measured), "rows": out_rows, "curves": curves}


def stored_metrics(result: dict[str, Any]) -> tuple[str, ...]:
    """The metrics an ablation measured: its task's (data/tasks.py); classification's for
    one stored before regression existed."""
    return tuple(result.get("metrics") or METRICS)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def values(row: dict[str, Any], metric: str) -> list[float | None]:
    """One value per seed, in seed order (None where that run diverged or has no such split)."""
    return [run.get(metric) for run in row["runs"]]


def effects_of(result: dict[str, Any]) -> dict[str, dict[str, Effect]]:
    """Each variant's paired effect on each metric: ``metric(variant) - metric(best)``."""
    best = result["rows"][0]
    return {
        row["key"]: {
            m: paired_effect(values(row, m), values(best, m)) for m in stored_metrics(result)
        }
        for row in result["rows"][1:]
    }


def stored_ablation(study: optuna.Study) -> dict[str, Any] | None:
    value = study.user_attrs.get(ABLATION_ATTR)
    # An ablation stored by an older regsweep (no per-seed curves) reads as not run.
    if not isinstance(value, dict) or "curves" not in value.get("rows", [{}])[0]:
        return None
    return value


def format_mean(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    return format_value(metric, row["mean"][metric], digits)


def format_effect(effect: Effect, metric: str, digits: int = 4) -> str:
    """``+0.0421 [+0.0301, +0.0541]``; without an interval just the difference."""
    if effect.mean is None:
        return "n/a"
    text = format_value(metric, effect.mean, digits, signed=True)
    if effect.low is None or effect.high is None:
        return text + " (1 seed: no CI)"
    low = format_value(metric, effect.low, digits, signed=True)
    high = format_value(metric, effect.high, digits, signed=True)
    return f"{text} [{low}, {high}]"


def table_lines(result: dict[str, Any]) -> list[str]:
    """The ablation as one line per variant, for optuna-dashboard's study attributes."""
    effects = effects_of(result)
    lines = [
        f"retrained trial {result['trial']} with {len(result['seeds'])} paired seeds; "
        "difference from best config [95% CI] = metric(variant) - metric(best)"
    ]
    for row in result["rows"]:
        parts = [f"{row['label']}:"]
        for metric in stored_metrics(result):
            if row["mean"][metric] is None:
                continue
            cell = f"{metric} {format_mean(row, metric)}"
            if row["key"] != "best":
                cell += f" ({format_effect(effects[row['key']][metric], metric)})"
            parts.append(cell)
        if row["same_as"]:
            parts.append(f"(same as {row['same_as']})")
        lines.append(" ".join(parts))
    return lines
