"""Ablation: retrain the best config with each regularizer removed, until the verdict is decided.

regsweep ablate sweeps/mnist.yaml

Every repetition (``insight.retrain``) draws fresh fit, validation and assessment rows
and a fresh seed, shared by all variants of that repetition, so each regularizer's effect
is a paired difference per repetition, measured on rows that chose nothing.
``insight.effects`` turns the differences into a corrected resampled t interval and
``insight.decisions`` into a decision (helps, hurts, negligible, undecided), adjusted for
the number of regularizers tested (Holm) and for looking after every round of
repetitions (alpha spending). ``insight.verdict`` writes the sentences. The result is
stored with the study, so ``report`` and optuna-dashboard show it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import optuna

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS, VerdictConfig
from regsweep.insight.decisions import LookPlan, Sequential
from regsweep.insight.effects import Effect, mean_interval, paired_effect
from regsweep.insight.metrics import LOWER_IS_BETTER, METRICS, format_value, metrics_in
from regsweep.insight.reference import REFERENCE
from regsweep.insight.reference import applies as reference_applies
from regsweep.insight.retrain import Engine, Retrainer
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
ALL = "all"  # the finding for all regularization together, against none
# The design of this version: repetitions with fresh rows, scored on assessment rows.
DESIGN = "repetitions"
HEADLINE = "assess_loss"
# Curves kept per variant (the first repetitions'): enough for the "why", small to store.
CURVES_KEPT = 5


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


def variant_key(name: str) -> str:
    """The variant that measures finding ``name``: ``no_dropout``, ..., ``none`` for ALL."""
    return "none" if name == ALL else f"no_{name}"


def complete(params: dict[str, Any]) -> dict[str, Any]:
    """All five regularizers' values, the defaults filled in."""
    reg = Regularization.from_params(params)
    return {name: getattr(reg, name) for name in REGULARIZERS}


def plan_for(verdict: VerdictConfig, repeats: int | None) -> LookPlan:
    """``--repeats K``: one look after K. Otherwise a look after every round of ``folds``
    repetitions (every row assessed once per round), up to ``max_repeats``."""
    if repeats is not None:
        return LookPlan.fixed(repeats)
    return LookPlan.sequential(verdict.folds, verdict.folds, verdict.max_repeats)


@dataclass(frozen=True)
class Look:
    """What one look decided, for the progress line: repetitions so far, decisions."""

    index: int
    of: int  # looks planned
    repetitions: int
    decisions: dict[str, str]  # finding -> helps / hurts / negligible / undecided
    final: bool
    stopped: str = ""  # why this look is the last: decided, cap, futile ("" if not last)


RunDone = Callable[[Variant, dict[str, Any]], None]


def run_ablation(
    study: optuna.Study,
    *,
    verdict: VerdictConfig | None = None,
    repeats: int | None = None,
    workers: int | None = None,
    on_run: RunDone | None = None,
    on_look: Callable[[Look], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    engine: Engine = "packed",
) -> dict[str, Any]:
    """Retrain every variant of the best trial until each effect is decided; store it.

    ``verdict`` (default: the study's stored ``verdict`` section) sets the smallest effect
    that matters, the folds and the cap; ``repeats`` fixes the count instead. Variants
    that equal another (a regularizer the best config already had off) are trained once
    and share their numbers.
    """
    from regsweep.insight.retrain import check_data

    config = require_config(study)
    verdict = verdict or config.verdict
    config = config.model_copy(update={"verdict": verdict})
    best = require_best(study)
    assert best.value is not None
    max_epochs = config.train.max_epochs
    rows = variants(best.params, max_epochs)
    plan = plan_for(verdict, repeats)
    has_test = check_data(config)

    unique: dict[tuple[Any, ...], Variant] = {}
    for variant in rows:
        unique.setdefault(effective(variant.params, max_epochs), variant)
    by_key = {v.key: v for v in unique.values()}
    same_as = {
        v.key: unique[effective(v.params, max_epochs)].key
        for v in rows
        if unique[effective(v.params, max_epochs)].key != v.key
    }
    tested = findings_to_test(same_as)
    if on_start is not None:
        on_start(len(unique) * plan.looks[-1])
    runs: dict[str, list[dict[str, Any]]] = {v.key: [] for v in unique.values()}
    with_reference = reference_applies(config)
    references: list[dict[str, Any]] = []
    sequential: Sequential | None = None
    result: dict[str, Any] = {}
    done = 0
    with Retrainer(
        config,
        [(v.key, v.params) for v in unique.values()],
        workers=workers,
        engine=engine,
        on_run=None if on_run is None else (lambda key, run: on_run(by_key[key], run)),
        reference=with_reference,
    ) as retrainer:
        for index, target in enumerate(plan.looks):
            for key, found in retrainer.run(range(done, target)).items():
                if key == REFERENCE:
                    references.extend(found)
                else:
                    runs[key].extend(found)
            done = target
            result = summarize(
                rows=rows,
                runs_of={e: runs[v.key] for e, v in unique.items()},
                same_as=same_as,
                max_epochs=max_epochs,
            )
            if sequential is None:
                # A share is of the best config's assessment loss, as first measured: the
                # best trial's own value is flattered by its selection (winner's curse).
                reference = _mean([run.get(HEADLINE) for run in runs["best"]]) or best.value
                sequential = Sequential(plan, tested, verdict.min_effect_for(reference))
            stopped = sequential.look(headline_effects(result, tested), done)
            if on_look is not None:
                decisions = {name: sequential.decision(name) for name in tested}
                on_look(Look(index + 1, len(plan.looks), done, decisions, bool(stopped), stopped))
            if stopped:
                break
        test_rows = retrainer.test_rows
    assert sequential is not None  # the plan has at least one look
    result.update(
        design=DESIGN,
        headline=HEADLINE,
        trial=best.number,
        best_value=best.value,
        repetitions=list(range(done)),
        seeds=[run["seed"] for run in runs["best"]],
        folds=verdict.folds,
        ratio=correction_ratio(result["rows"][0]["runs"]),
        min_effect=sequential.min_effect,
        min_effect_spec=verdict.min_effect,
        alpha=plan.alpha,
        mode="fixed" if repeats is not None else "sequential",
        stopped=sequential.stopped,
        planned_looks=list(plan.looks),
        looks=sequential.looks,
        tested=tested,
        verdicts=sequential.verdicts(),
        test_check=_test_check(test_rows, same_as) if has_test else {},
        reference=_reference(references, runs["best"]) if with_reference else None,
        has_test=has_test,
        max_epochs=max_epochs,
        engine=engine,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    study.set_user_attr(ABLATION_ATTR, result)
    study.set_user_attr(ABLATION_TABLE_ATTR, table_lines(result))
    return result


def headline(result: dict[str, Any]) -> str:
    """The metric a verdict or a path is told in: the assessment loss (the validation loss
    for older results, measured before there were assessment rows)."""
    return str(result.get("headline", "val_loss"))


def findings_to_test(same_as: dict[str, str]) -> list[str]:
    """The findings a verdict tests: all regularization, then each regularizer, leaving out
    those whose variant is the best config itself (off in it already)."""
    return [name for name in (ALL, *REGULARIZERS) if same_as.get(variant_key(name)) != "best"]


def summarize(
    *,
    rows: list[Variant],
    runs_of: dict[tuple[Any, ...], list[dict[str, Any]]],
    same_as: dict[str, str],
    max_epochs: int,
) -> dict[str, Any]:
    """Each variant's runs (repetition order) and means; effects are computed on read."""
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
                    for run in runs[:CURVES_KEPT]
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


def _reference(references: list[dict[str, Any]], best: list[dict[str, Any]]) -> dict[str, Any]:
    """Gradient boosting's mean scores, and its paired difference from the best config on
    the headline (corrected resampled t, 95%): reference − best config."""
    metrics = metrics_in(references)
    by_rep = {run["repetition"]: run for run in references}
    paired = [run for run in best if run["repetition"] in by_rep]
    effect = paired_effect(
        [by_rep[run["repetition"]].get(HEADLINE) for run in paired],
        [run.get(HEADLINE) for run in paired],
        ratio=correction_ratio(best),
    )
    return {
        "model": references[0]["model"] if references else None,
        "mean": {m: _mean([run.get(m) for run in references]) for m in metrics},
        "best_mean": {m: _mean([run.get(m) for run in paired]) for m in metrics},
        "effect": effect.as_dict(),
        "repetitions": len(references),
    }


def correction_ratio(runs: list[dict[str, Any]]) -> float:
    """n_assess / n_train of a repetition (the rows that trained and chose): the corrected
    resampled t's correlation correction. 0 for runs without assessment rows (older
    results, on fixed rows)."""
    ratios = [
        run["n_assess"] / (run["n_fit"] + run["n_val"]) for run in runs if run.get("n_assess")
    ]
    return statistics.fmean(ratios) if ratios else 0.0


def headline_effects(result: dict[str, Any], names: list[str]) -> dict[str, Effect]:
    """The effect behind each finding on the headline metric, at 95% (corrected)."""
    rows = {row["key"]: row for row in result["rows"]}
    ratio = correction_ratio(rows["best"]["runs"])
    headline = result.get("headline", HEADLINE)
    return {
        name: paired_effect(
            values(rows[variant_key(name)], headline),
            values(rows["best"], headline),
            ratio=ratio,
        )
        for name in names
    }


def _test_check(
    test_rows: dict[str, dict[int, dict[str, Any]]], same_as: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each variant against the best config on the test rows: per row, the difference of
    the two losses (and correctness) averaged over the repetitions where both trained
    (a diverged run has none); a t interval over the rows. It carries the test rows'
    sampling noise, not the training noise, which the average over repetitions holds fixed.
    """
    import numpy as np

    best = test_rows.get("best", {})
    out: dict[str, dict[str, Any]] = {}
    for key, found in test_rows.items():
        if key == "best" or same_as.get(key) == "best":
            continue
        paired = sorted(set(found) & set(best))
        if not paired:
            continue
        out[key] = {}
        for name, metric in (("loss", "test_loss"), ("correct", "test_accuracy")):
            if name not in best[paired[0]]:
                continue
            diff = np.mean(
                [np.asarray(found[r][name]) - np.asarray(best[r][name]) for r in paired], axis=0
            )
            mean, low, high = mean_interval(diff.tolist())
            out[key][metric] = {**Effect(len(diff), mean, low, high).as_dict(), "runs": len(paired)}
    for key, twin in same_as.items():
        if twin in out:
            out[key] = out[twin]
    return out


def stored_metrics(result: dict[str, Any]) -> tuple[str, ...]:
    """The metrics an ablation measured: its task's (data/tasks.py); classification's for
    one stored before regression existed."""
    return tuple(result.get("metrics") or METRICS)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def values(row: dict[str, Any], metric: str) -> list[float | None]:
    """One value per repetition, in order (None where that run diverged or has no such split)."""
    return [run.get(metric) for run in row["runs"]]


def is_current(result: dict[str, Any]) -> bool:
    """Whether ``result`` comes from this design (repetitions scored on assessment rows)."""
    return result.get("design") == DESIGN


def effects_of(result: dict[str, Any]) -> dict[str, dict[str, Effect]]:
    """Each variant's effect on each metric: ``metric(variant) - metric(best)``.

    Assessment and validation metrics: paired over repetitions, corrected resampled t at
    95% (not adjusted: the verdict's decisions are). Test metrics: the row-wise check,
    where it was measured; otherwise the plain paired difference over repetitions.
    """
    best = result["rows"][0]
    ratio = correction_ratio(best["runs"])
    checks = result.get("test_check") or {}
    out: dict[str, dict[str, Effect]] = {}
    for row in result["rows"][1:]:
        out[row["key"]] = {}
        for metric in stored_metrics(result):
            stored = checks.get(row["key"], {}).get(metric)
            if stored is not None:
                out[row["key"]][metric] = Effect.from_dict(stored)
            elif metric.startswith("test_") and is_current(result):
                # Test RMSE and R² are not sums over rows: their mean difference only.
                effect = paired_effect(values(row, metric), values(best, metric))
                out[row["key"]][metric] = Effect(effect.n, effect.mean, None, None)
            else:
                out[row["key"]][metric] = paired_effect(
                    values(row, metric), values(best, metric), ratio=ratio
                )
    return out


def stored_ablation(study: optuna.Study) -> dict[str, Any] | None:
    """The stored ablation: this design's, or an older one (``legacy``) upgraded to read."""
    from regsweep.insight.legacy import upgrade

    value = study.user_attrs.get(ABLATION_ATTR)
    # An ablation stored by a much older regsweep (no per-seed curves) reads as not run.
    if not isinstance(value, dict) or "curves" not in value.get("rows", [{}])[0]:
        return None
    return value if is_current(value) else upgrade(value)


def format_mean(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    return format_value(metric, row["mean"][metric], digits)


def format_effect(effect: Effect, metric: str, digits: int = 4) -> str:
    """``+0.0421 [+0.0301, +0.0541]``; without an interval just the difference."""
    if effect.mean is None:
        return "n/a"
    text = format_value(metric, effect.mean, digits, signed=True)
    if effect.low is None or effect.high is None:
        return text + (" (1 run: no CI)" if effect.n == 1 else "")
    low = format_value(metric, effect.low, digits, signed=True)
    high = format_value(metric, effect.high, digits, signed=True)
    return f"{text} [{low}, {high}]"


def table_lines(result: dict[str, Any]) -> list[str]:
    """The ablation as one line per variant, for optuna-dashboard's study attributes."""
    effects = effects_of(result)
    unit = "repetitions" if is_current(result) else "paired seeds"
    lines = [
        f"retrained trial {result['trial']} over {len(result['seeds'])} {unit}; "
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


def ablation_seeds(study_seed: int, n: int) -> list[int]:
    """The seeds of repetitions 0 .. n-1 (their initial weights and batch order)."""
    from regsweep.data.resample import repetition_seed

    return [repetition_seed(study_seed, i) for i in range(n)]
