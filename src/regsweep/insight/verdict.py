"""The answer in words: one sentence per regularizer, biggest effect first, with its interval
and the measured number that explains it ("the why").

Read from a stored ablation (``insight.ablation``); the sign convention is that of
``insight.effects``: effect = metric(without it) - metric(best config), so for the loss a
positive effect means the regularizer helps.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from regsweep.config.schema import REGULARIZERS
from regsweep.insight.ablation import LABELS, effects_of, values
from regsweep.insight.effects import Effect, Verdict, classify
from regsweep.insight.metrics import (
    HEADLINE,
    LOWER_IS_BETTER,
    format_value,
    label,
    metrics_in,
    secondary,
)
from regsweep.sweep.progress import format_param

ALL = "all"  # the finding for all regularization together, against none


@dataclass(frozen=True)
class Finding:
    name: str  # a regularizer, or ALL
    title: str  # "dropout 0.3", "all regularization"
    verdict: Verdict | None  # None: off in the best config, nothing was removed
    effect: Effect | None  # on the headline metric
    sentence: str
    evidence: str  # the measured "why", next to the effect it explains ("" if none)


@dataclass(frozen=True)
class Why:
    """The best config against a twin without (some) regularization, averaged over seeds."""

    gap_best: float | None  # validation - train loss at the measured weights
    gap_other: float | None
    best_epoch: float | None  # the best config's epoch of best validation loss
    stopped_at: float | None  # epochs the best config ran
    other_epochs: float | None  # epochs the twin ran
    sparsity_best: float | None
    sparsity_other: float | None
    secondary_cost: float | None  # secondary(best) - secondary(twin), paired mean
    bn_epoch: float | None  # epoch at which the batch-norm run reached the other's best loss
    other_best_epoch: float | None  # the epoch of the other run's best validation loss
    secondary_metric: str = "val_accuracy"  # accuracy, or R² for regression


def findings(result: dict[str, Any]) -> list[Finding]:
    """All regularization vs none first, then each regularizer, biggest effect first."""
    effects = effects_of(result)
    rows = {row["key"]: row for row in result["rows"]}
    best = rows["best"]
    seeds = len(result["seeds"])
    per_reg: list[Finding] = []
    for name in REGULARIZERS:
        row = rows[f"no_{name}"]
        title = f"{LABELS[name]} {shown_value(name, best['params'][name])}"
        if row["same_as"] == "best":
            per_reg.append(
                Finding(
                    name,
                    LABELS[name],
                    None,
                    None,
                    f"{_cap(LABELS[name])} is off in the best config "
                    f"({format_param(name, best['params'][name])}): nothing to remove.",
                    "",
                )
            )
            continue
        effect = effects[row["key"]][HEADLINE]
        verdict = classify(effect, LOWER_IS_BETTER[HEADLINE])
        evidence = _evidence(name, why(best, row), result["max_epochs"])
        sentence = _sentence(title, verdict, effect, seeds)
        per_reg.append(Finding(name, title, verdict, effect, sentence, evidence))
    tested = [f for f in per_reg if f.effect is not None and f.effect.mean is not None]
    untested = [f for f in per_reg if f not in tested]
    tested.sort(key=lambda f: -abs(f.effect.mean or 0.0) if f.effect else 0.0)
    none = rows["none"]
    out: list[Finding] = []
    if none["same_as"] != "best":
        effect = effects["none"][HEADLINE]
        verdict = classify(effect, LOWER_IS_BETTER[HEADLINE])
        title = "all regularization"
        twin = why(best, none)
        evidence = _gap_line(twin, "with all of it", "with none")
        out.append(Finding(ALL, title, verdict, effect, _sentence(title, verdict, effect, seeds),
                           evidence))  # fmt: skip
    return out + tested + untested


def shown_value(name: str, value: Any) -> str:
    """``0.3``, ``1e-05``, ``on``: a regularizer's value without its name."""
    if name == "batch_norm":
        return "on" if value else "off"
    if name == "patience":
        return f"(patience {value})"
    return format_param(name, value).split("=", 1)[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(title: str, verdict: Verdict, effect: Effect, seeds: int) -> str:
    metric = label(HEADLINE)
    assert effect.mean is not None
    diff = format_value(HEADLINE, effect.mean, signed=True)
    n = f"{effect.n} paired seed{'s' if effect.n != 1 else ''}"
    if verdict == "no interval":
        return (
            f"{_cap(title)}: without it {metric} changes by {diff} on {n}; with one seed no "
            "confidence interval exists (run ablate with --seeds 3 or more)."
        )
    assert effect.low is not None and effect.high is not None and effect.width is not None
    ci = (
        f"95% CI {format_value(HEADLINE, effect.low, signed=True)} to "
        f"{format_value(HEADLINE, effect.high, signed=True)}, {n}"
    )
    size = format_value(HEADLINE, abs(effect.mean))
    higher = "higher" if effect.mean > 0 else "lower"
    if verdict == "helps":
        return f"{_cap(title)} helps: without it {metric} is {size} {higher}, worse ({ci})."
    if verdict == "hurts":
        return f"{_cap(title)} hurts: without it {metric} is {size} {higher}, better ({ci})."
    if effect.width == 0.0 and effect.mean == 0.0:
        return (
            f"{_cap(title)}: no effect: the runs with and without it are identical on all "
            f"{n} ({metric} {diff})."
        )
    hide = max(abs(effect.low), abs(effect.high))
    return (
        f"{_cap(title)}: no measurable effect at {effect.n} seeds: without it {metric} "
        f"changes by {diff} ({ci}); the interval is {format_value(HEADLINE, effect.width)} "
        f"wide, so an effect as large as {format_value(HEADLINE, hide)} could hide in it."
    )


def why(best: dict[str, Any], other: dict[str, Any]) -> Why:
    """The measured numbers that explain an effect, best config against ``other``."""

    def mean_of(row: dict[str, Any], key: str) -> float | None:
        known = [run[key] for run in row["runs"] if run.get(key) is not None]
        return statistics.fmean(known) if known else None

    second = secondary(metrics_in(best["runs"]))
    cost = [
        b - o
        for b, o in zip(values(best, second), values(other, second), strict=True)
        if b is not None and o is not None
    ]
    bn_epochs: list[int] = []
    other_best: list[int] = []
    bn_row, plain_row = (best, other) if best["params"]["batch_norm"] else (other, best)
    if bn_row["params"]["batch_norm"] and not plain_row["params"]["batch_norm"]:
        for bn_curve, plain_curve in zip(bn_row["curves"], plain_row["curves"], strict=True):
            target = min(plain_curve["val_loss"])
            reached = [i for i, v in enumerate(bn_curve["val_loss"], 1) if v <= target]
            if reached:
                bn_epochs.append(reached[0])
                other_best.append(plain_curve["val_loss"].index(target) + 1)
    return Why(
        gap_best=mean_of(best, "gap"),
        gap_other=mean_of(other, "gap"),
        best_epoch=mean_of(best, "best_epoch"),
        stopped_at=mean_of(best, "epochs_run"),
        other_epochs=mean_of(other, "epochs_run"),
        sparsity_best=mean_of(best, "weight_sparsity"),
        sparsity_other=mean_of(other, "weight_sparsity"),
        secondary_cost=statistics.fmean(cost) if cost else None,
        bn_epoch=statistics.fmean(bn_epochs) if bn_epochs else None,
        other_best_epoch=statistics.fmean(other_best) if other_best else None,
        secondary_metric=second,
    )


def _gap_line(twin: Why, mine: str, theirs: str) -> str:
    if twin.gap_best is None or twin.gap_other is None:
        return ""
    return (
        f"generalization gap (validation − train loss) {twin.gap_best:.4f} {mine} vs "
        f"{twin.gap_other:.4f} {theirs}"
    )


def _evidence(name: str, twin: Why, max_epochs: int) -> str:
    if name in ("dropout", "weight_decay"):
        return _gap_line(twin, "with it", "without")
    if name == "l1":
        if twin.sparsity_best is None or twin.sparsity_other is None:
            return ""
        cost = (
            f", {label(twin.secondary_metric)} "
            f"{format_value(twin.secondary_metric, twin.secondary_cost, signed=True)} "
            "with it than without"
            if twin.secondary_cost is not None
            else ""
        )
        return (
            f"weights with |w| < 1e-3: {twin.sparsity_best:.1%} with it vs "
            f"{twin.sparsity_other:.1%} without{cost}"
        )
    if name == "batch_norm":
        return batch_norm_line(twin, "without it")
    if name == "patience":
        return patience_line(twin, max_epochs)
    return ""


def batch_norm_line(twin: Why, other: str) -> str:
    if twin.bn_epoch is None or twin.other_best_epoch is None:
        return f"the batch-norm run never reached the best validation loss of the run {other}"
    saved = twin.other_best_epoch - twin.bn_epoch
    return (
        f"reached the best validation loss of the run {other} at epoch {twin.bn_epoch:.1f} "
        f"instead of {twin.other_best_epoch:.1f} ({saved:+.1f} epochs saved)"
    )


def patience_line(twin: Why, max_epochs: int) -> str:
    if twin.best_epoch is None or twin.stopped_at is None:
        return ""
    later = max_epochs - twin.stopped_at
    return (
        f"best validation loss at epoch {twin.best_epoch:.1f}, stopped at epoch "
        f"{twin.stopped_at:.1f}; without early stopping training would have run all "
        f"{max_epochs} epochs ({later:.1f} more)"
    )


def why_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The best config against its no-regularization twin: (what, number, what it explains)."""
    rows = {row["key"]: row for row in result["rows"]}
    best, none = rows["best"], rows["none"]
    twin = why(best, none)
    max_epochs = int(result["max_epochs"])
    out: list[tuple[str, str, str]] = []
    if twin.gap_best is not None and twin.gap_other is not None:
        out.append(
            (
                "generalization gap at the measured epoch (validation − train loss)",
                f"{twin.gap_best:.4f} best config vs {twin.gap_other:.4f} no regularization",
                "dropout, weight decay and L1 (less overfitting)",
            )
        )
    if twin.best_epoch is not None and twin.stopped_at is not None:
        out.append(
            (
                "epoch of best validation loss; where training ended",
                patience_line(twin, max_epochs),
                "early stopping",
            )
        )
    if twin.sparsity_best is not None and twin.sparsity_other is not None:
        cost = (
            f"; {label(twin.secondary_metric)} "
            f"{format_value(twin.secondary_metric, twin.secondary_cost, signed=True)} "
            "best vs none"
            if twin.secondary_cost is not None
            else ""
        )
        out.append(
            (
                "weight sparsity (|w| < 1e-3)",
                f"{twin.sparsity_best:.1%} best config vs {twin.sparsity_other:.1%} none{cost}",
                "L1",
            )
        )
    if best["params"]["batch_norm"]:
        out.append(
            (
                "epochs to reach the no-regularization run's best validation loss",
                batch_norm_line(twin, "without regularization"),
                "batch norm (faster optimization)",
            )
        )
    return out


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """The verdict as plain lines: sentence, then its evidence indented."""
    lines = []
    for finding in findings(result):
        lines.append(finding.sentence)
        if finding.evidence:
            lines.append(f"    why: {finding.evidence}")
    return lines


def verdict_markdown(result: dict[str, Any], study_name: str) -> str:
    """The verdict as the study's optuna-dashboard note (Markdown)."""
    seeds = len(result["seeds"])
    lines = [
        f"## regsweep verdict: {study_name}",
        "",
        f"Best trial #{result['trial']} retrained with each regularizer removed, "
        f"{seeds} paired seed{'s' if seeds != 1 else ''} (same initial weights and batch "
        f"order per seed). Effect = {label(HEADLINE)} without it − with it; positive = it "
        "helps.",
        "",
    ]
    for finding in findings(result):
        word = f"**{finding.verdict}**" if finding.verdict else "*off*"
        lines.append(f"- {word}: {finding.sentence}")
        if finding.evidence:
            lines.append(f"  - why: {finding.evidence}")
    lines += ["", f"Ablation run {result['created']}; details: `regsweep report`."]
    return "\n".join(lines)
