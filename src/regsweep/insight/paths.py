"""Dose-response paths: the best config retrained at a grid of strengths of one regularizer.

regsweep paths sweeps/mnist.yaml

In a TPE study every parameter moves at once, so a slice plot mixes the effect of one
regularizer with those of the others. Here only one moves: for each regularizer the
search varied, the best config is retrained at a grid of its strengths that includes
"off", over the same repetitions as ``ablate`` (the same rows and seeds: every point of
a repetition is a member of that repetition's pack), paired with the best config itself.
The effect of a point is ``metric(point) - metric(best config)`` on the assessment rows,
with the corrected resampled t interval at 95% for each point (``insight.effects``; a
curve, not a decision, so not adjusted across points).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import optuna

from regsweep.config.schema import ParamSpec, SweepConfig, VerdictConfig
from regsweep.insight.ablation import (
    DESIGN,
    HEADLINE,
    ablation_seeds,
    complete,
    correction_ratio,
    headline,
    values,
)
from regsweep.insight.effects import Effect, paired_effect
from regsweep.insight.retrain import Engine, check_data, run_retrains
from regsweep.insight.studyview import effective, require_best, require_config, varied_params

PATHS_ATTR = "regsweep_paths"
DROPOUT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
LOG_POINTS = 6  # at most, besides 0, on weight decay's and L1's log grids


def grid(name: str, spec: ParamSpec, max_epochs: int) -> list[Any]:
    """The strengths of ``name`` to retrain at, "off" first."""
    if name == "dropout":
        return list(DROPOUT_GRID)
    if name == "batch_norm":
        return [False, True]
    if name == "patience":
        points = [1]
        while points[-1] * 2 < max_epochs:
            points.append(points[-1] * 2)
        return [*points, max_epochs]  # max_epochs: early stopping off
    # weight_decay, l1: 0, then a log grid from the searched low to a decade past its high.
    searched = [float(v) for v in spec.candidate_values() if float(v) > 0]
    high = max(searched) if searched else 1e-3
    low = min(searched) if searched else high / 1e4
    if spec.low is not None and spec.high is not None:
        low, high = max(float(spec.low), float(spec.high) / 1e6, 1e-12), float(spec.high)
    top = high * 10
    decades = max(1, round(math.log10(top / low)))
    strengths = np.geomspace(low, top, num=min(LOG_POINTS, decades + 1))
    return [0.0, *(float(f"{p:.2g}") for p in strengths)]


def point_label(name: str, value: Any, max_epochs: int) -> str:
    if name == "batch_norm":
        return "on" if value else "off"
    if name == "patience":
        return "off" if int(value) >= max_epochs else str(int(value))
    return "off" if float(value) == 0 else f"{float(value):.3g}"


def default_repeats(config: SweepConfig) -> int:
    """One round of folds (every row assessed once): ablate's first repetitions, so the
    same rows and seeds. A path has many points; more rounds cost as much again each."""
    return config.verdict.folds


def run_paths(
    study: optuna.Study,
    *,
    repeats: int | None = None,
    verdict: VerdictConfig | None = None,
    workers: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_run: Callable[[str, dict[str, Any]], None] | None = None,
    engine: Engine = "packed",
    names: list[str] | None = None,
) -> dict[str, Any]:
    """Retrain the best config along every varied regularizer's grid; store and return it."""
    config: SweepConfig = require_config(study)
    # The same folds as the ablation's, so that repetition r has the same rows in both.
    config = config.model_copy(update={"verdict": verdict or config.verdict})
    best_trial = require_best(study)
    max_epochs = config.train.max_epochs
    best = complete(best_trial.params)
    chosen = names if names is not None else varied_params(study)
    n = repeats if repeats is not None else default_repeats(config)
    has_test = check_data(config)

    jobs: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {
        effective(best, max_epochs): ("best", best)
    }
    points: dict[str, list[dict[str, Any]]] = {}
    for name in chosen:
        spec = getattr(config.search_space, name)
        strengths = grid(name, spec, max_epochs)
        own = min(best[name], max_epochs) if name == "patience" else best[name]
        if own not in strengths:  # the best config's own value is a point of its path
            strengths = sorted([*strengths, own])
        points[name] = []
        for value in strengths:
            params = {**best, name: value}
            key = jobs.setdefault(effective(params, max_epochs), (f"{name}={value}", params))[0]
            points[name].append(
                {
                    "value": value,
                    "label": point_label(name, value, max_epochs),
                    "key": key,
                    "is_best": effective(params, max_epochs) == effective(best, max_epochs),
                }
            )
    if on_start is not None:
        on_start(len(jobs) * n)
    runs = run_retrains(
        config, list(jobs.values()), range(n), workers=workers, engine=engine, on_run=on_run
    )
    stripped = {
        key: [{k: v for k, v in run.items() if not k.endswith("_curve")} for run in found]
        for key, found in runs.items()
    }
    result: dict[str, Any] = {
        "design": DESIGN,
        "headline": HEADLINE,
        "trial": best_trial.number,
        "best": best,
        "repetitions": list(range(n)),
        "seeds": ablation_seeds(config.study.seed, n),
        "folds": config.verdict.folds,
        "has_test": has_test,
        "max_epochs": max_epochs,
        "engine": engine,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": stripped,
        "paths": points,
    }
    study.set_user_attr(PATHS_ATTR, result)
    return result


def stored_paths(study: optuna.Study) -> dict[str, Any] | None:
    value = study.user_attrs.get(PATHS_ATTR)
    return value if isinstance(value, dict) and "paths" in value else None


def point_effect(result: dict[str, Any], key: str, metric: str | None = None) -> Effect:
    """The paired effect of one point against the best config: ``point - best``, corrected
    for the rows the repetitions share (older paths, on fixed rows: plain paired t)."""
    metric = metric or headline(result)
    point = {"runs": result["runs"][key]}
    best = {"runs": result["runs"]["best"]}
    ratio = correction_ratio(best["runs"])
    return paired_effect(values(point, metric), values(best, metric), ratio=ratio)
