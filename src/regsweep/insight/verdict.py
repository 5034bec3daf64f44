"""The answer in words: one sentence per regularizer, biggest effect first, with its decision,
its interval, its test-row check and the measured number that explains it ("the why").

Read from a stored ablation (``insight.ablation``); the sign convention is that of
``insight.effects``: effect = metric(without it) - metric(best config), so for the loss a
positive effect means the regularizer helps.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from regsweep.config.schema import REGULARIZERS
from regsweep.insight.ablation import (
    ALL,
    LABELS,
    headline,
    is_current,
    values,
    variant_key,
)
from regsweep.insight.decisions import Decision, Judged
from regsweep.insight.effects import Effect, floor_width
from regsweep.insight.metrics import format_value, label, metrics_in, secondary
from regsweep.sweep.progress import format_param


@dataclass(frozen=True)
class Finding:
    name: str  # a regularizer, or ALL
    title: str  # "dropout 0.3", "all regularization"
    verdict: Decision | None  # None: off in the best config, nothing was removed
    effect: Effect | None  # on the headline metric, at the level that decided it
    sentence: str
    evidence: str  # the measured "why", next to the effect it explains ("" if none)
    real: bool = False  # the interval excludes 0 (negligible effects can still be real)
    test: Effect | None = None  # the same change on the test rows (the independent check)

    @property
    def word(self) -> str:
        """The decision as a tag: helps, hurts, negligible, real but negligible, undecided."""
        if self.verdict is None:
            return "off"
        if self.verdict == "negligible" and self.real:
            return "real but negligible"
        return self.verdict


@dataclass(frozen=True)
class Why:
    """The best config against a twin without (some) regularization, averaged over runs."""

    gap_best: float | None  # assessment - train loss at the measured weights
    gap_other: float | None
    best_epoch: float | None  # the best config's epoch of best validation loss
    stopped_at: float | None  # epochs the best config ran
    other_epochs: float | None  # epochs the twin ran
    sparsity_best: float | None
    sparsity_other: float | None
    secondary_cost: float | None  # secondary(best) - secondary(twin), paired mean
    bn_epoch: float | None  # epoch at which the batch-norm run reached the other's best loss
    other_best_epoch: float | None  # the epoch of the other run's best validation loss
    secondary_metric: str = "assess_accuracy"  # accuracy, or R² for regression
    gap_of: str = "assessment"  # which loss the gap is measured on


def unit(result: dict[str, Any], n: int) -> str:
    word = "repetition" if is_current(result) else "paired seed"
    return f"{n} {word}{'s' if n != 1 else ''}"


def findings(result: dict[str, Any]) -> list[Finding]:
    """All regularization vs none first, then each regularizer, biggest effect first."""
    rows = {row["key"]: row for row in result["rows"]}
    best = rows["best"]
    # The test rows' check, where this design measured one (older ablations have none).
    test_effects = {
        key: {m: Effect.from_dict(found) for m, found in metrics.items()}
        for key, metrics in (result.get("test_check") or {}).items()
    }
    per_reg: list[Finding] = []
    for name in REGULARIZERS:
        row = rows[variant_key(name)]
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
        title = f"{LABELS[name]} {shown_value(name, best['params'][name])}"
        evidence = _evidence(name, why(best, row, result), int(result["max_epochs"]))
        per_reg.append(_finding(result, name, title, evidence, test_effects))
    tested = [f for f in per_reg if f.effect is not None and f.effect.mean is not None]
    untested = [f for f in per_reg if f not in tested]
    tested.sort(key=lambda f: -abs(f.effect.mean or 0.0) if f.effect else 0.0)
    out: list[Finding] = []
    if rows["none"]["same_as"] != "best":
        twin = why(best, rows["none"], result)
        evidence = _gap_line(twin, "with all of it", "with none")
        out.append(_finding(result, ALL, "all regularization", evidence, test_effects))
    return out + tested + untested


def _finding(
    result: dict[str, Any],
    name: str,
    title: str,
    evidence: str,
    test_effects: dict[str, dict[str, Effect]],
) -> Finding:
    stored = result["verdicts"][name]
    judged = Judged.from_dict(stored)
    test = test_effects.get(variant_key(name), {}).get("test_loss")
    sentence = _sentence(result, title, judged, stored, test, name) + _diverged_text(result, name)
    return Finding(
        name, title, judged.decision, judged.effect, sentence, evidence, judged.real, test
    )


def shown_value(name: str, value: Any) -> str:
    """``0.3``, ``1e-05``, ``on``: a regularizer's value without its name."""
    if name == "batch_norm":
        return "on" if value else "off"
    if name == "patience":
        return f"(patience {value})"
    return format_param(name, value).split("=", 1)[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(
    result: dict[str, Any],
    title: str,
    judged: Judged,
    stored: dict[str, Any],
    test: Effect | None,
    name: str,
) -> str:
    metric = headline(result)
    effect = judged.effect
    runs = unit(result, int(stored.get("repetitions") or effect.n))
    what = label(metric)
    if effect.mean is None:
        return f"{_cap(title)}: not measured (every run without it diverged)."
    diff = format_value(metric, effect.mean, signed=True)
    if not effect.has_interval:
        return (
            f"{_cap(title)}: without it {what} changes by {diff} on {runs}; one run has no "
            "interval (run ablate with --repeats 3 or more)."
        )
    assert effect.low is not None and effect.high is not None
    word = "adjusted 95% CI" if is_current(result) else "95% CI"
    ci = (
        f"{word} {format_value(metric, effect.low, signed=True)} to "
        f"{format_value(metric, effect.high, signed=True)}, {runs}"
    )
    extra = _secondary(result, name) + _test_text(test)
    size = format_value(metric, abs(effect.mean))
    higher = "higher" if effect.mean > 0 else "lower"
    if judged.decision == "helps":
        return f"{_cap(title)} helps: without it {what} is {size} {higher}, worse ({ci}){extra}."
    if judged.decision == "hurts":
        return f"{_cap(title)} hurts: without it {what} is {size} {higher}, better ({ci}){extra}."
    bound = format_value(metric, float(result.get("min_effect") or 0.0))
    if judged.decision == "negligible":
        if effect.width == 0.0 and effect.mean == 0.0:
            return (
                f"{_cap(title)}: no effect: the runs with and without it are identical on "
                f"all {runs} ({what} {diff})."
            )
        real = (
            " It is real (the interval excludes 0) but smaller than matters." if judged.real else ""
        )
        return (
            f"{_cap(title)} is negligible: without it {what} changes by {diff} ({ci}), "
            f"inside ±{bound}, the smallest effect that matters{extra}.{real}"
        )
    if not is_current(result):
        return (
            f"{_cap(title)}: no measurable effect at {runs}: without it {what} changes by "
            f"{diff} ({ci}); the interval is {format_value(metric, effect.width)} wide."
        )
    more = stored.get("more")
    if more is None:
        floor = float(stored.get("floor") or _floor(effect))
        limit = float(result.get("min_effect") or 0.0)
        if abs(effect.mean) < floor and abs(effect.mean) + floor >= limit:
            # The rows alone rule it out: even endless repetitions at this look's level.
            why = (
                f"with the rows shared between repetitions its interval stays about "
                f"±{format_value(metric, floor)} wide at best, which still reaches both 0 "
                f"and ±{bound}"
            )
        else:
            why = (
                f"endless repetitions would narrow its interval to about "
                f"±{format_value(metric, floor)}, but only slowly, beyond 1,000"
            )
        then = f"no cap up to 1,000 repetitions would decide it at the spread seen: {why}"
    else:
        done = int(stored.get("repetitions") or effect.n)
        cap = stored.get("cap") or done + more
        if stored.get("fixed"):  # one look: it spends all the error, looks in between none
            how = f"ablate --repeats {cap}, one look"
        else:
            how = f"ablate --max-repeats {cap}"
        then = (
            f"about {more} more repetition{'' if more == 1 else 's'} would decide it at "
            f"the spread seen ({how}: a new run, with its own error budget)"
        )
    bare = ci.removesuffix(f", {runs}")  # the count is said already
    return (
        f"{_cap(title)}: undecided after {runs}: without it {what} changes by {diff} "
        f"({bare}){extra}; {then}."
    )


def _diverged_text(result: dict[str, Any], name: str) -> str:
    """`` (2 of 10 runs without it diverged and are left out)``, when any did."""
    rows = {row["key"]: row for row in result["rows"]}
    counts = {
        which: sum(1 for run in rows[key]["runs"] if run.get("diverged"))
        for which, key in (("without it", variant_key(name)), ("of the best config", "best"))
    }
    parts = [f"{n} run{'s' if n != 1 else ''} {which}" for which, n in counts.items() if n]
    if not parts:
        return ""
    total = len(rows["best"]["runs"])
    return (
        f" Diverged and left out of the pairs: {' and '.join(parts)} (of {total} "
        "repetitions): the effect is measured on the rest."
    )


def _floor(effect: Effect) -> float:
    """The half-width the interval approaches with endless repetitions, at its own level
    (for verdicts stored without the floor their decisions computed)."""
    return floor_width(effect.sd or 0.0, effect.ratio, 1.0 - effect.confidence)


def _secondary(result: dict[str, Any], name: str) -> str:
    """``; accuracy 1.20 points lower without it`` (or RMSE and R² for regression)."""
    if not is_current(result):
        return ""
    rows = {row["key"]: row for row in result["rows"]}
    best, other = rows["best"], rows[variant_key(name)]
    parts = []
    for metric in ("assess_accuracy", "assess_rmse", "assess_r2"):
        diffs = [
            o - b
            for o, b in zip(values(other, metric), values(best, metric), strict=True)
            if o is not None and b is not None
        ]
        if not diffs:
            continue
        mean = statistics.fmean(diffs)
        short = label(metric).removeprefix("assessment ")
        if metric == "assess_accuracy":
            parts.append(
                f"{short} {abs(mean) * 100:.2f} points {'higher' if mean > 0 else 'lower'}"
            )
        else:
            parts.append(f"{short} {format_value(metric, mean, signed=True)}")
    return f"; {', '.join(parts)} without it" if parts else ""


def _test_text(test: Effect | None) -> str:
    if test is None or test.mean is None:
        return ""
    text = format_value("test_loss", test.mean, signed=True)
    if test.low is not None and test.high is not None:
        text += (
            f" [{format_value('test_loss', test.low, signed=True)}, "
            f"{format_value('test_loss', test.high, signed=True)}]"
        )
    return f"; on the {test.n} test rows {text}"


def why(best: dict[str, Any], other: dict[str, Any], result: dict[str, Any] | None = None) -> Why:
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
        gap_of="assessment" if result is None or is_current(result) else "validation",
    )


def _gap_line(twin: Why, mine: str, theirs: str) -> str:
    if twin.gap_best is None or twin.gap_other is None:
        return ""
    return (
        f"generalization gap ({twin.gap_of} − train loss) {twin.gap_best:.4f} {mine} vs "
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
    twin = why(best, none, result)
    max_epochs = int(result["max_epochs"])
    out: list[tuple[str, str, str]] = []
    if twin.gap_best is not None and twin.gap_other is not None:
        out.append(
            (
                f"generalization gap at the measured epoch ({twin.gap_of} − train loss)",
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


def design_line(result: dict[str, Any]) -> str:
    """How the verdict was measured, in one line, under its sentences."""
    if not is_current(result):
        return str(result.get("legacy_note", ""))
    looks = result["looks"]
    tested = len(result["tested"])
    spec = result.get("min_effect_spec")
    share = f" ({spec} of the best config's assessment loss)" if isinstance(spec, str) else ""
    planned = len(result.get("planned_looks", [])) or len(looks)
    how = (
        f"{len(looks)} look{'s' if len(looks) != 1 else ''} of {planned} planned (alpha spending)"
        if result.get("mode") == "sequential"
        else "one look"
    )
    return (
        f"Trial #{result['trial']} retrained over {unit(result, len(result['seeds']))}: each "
        f"draws fresh fit, validation and assessment rows ({result['folds']} rotating folds) "
        "and a fresh seed, shared by all variants of it. Effects are on the assessment rows, "
        "which chose nothing; intervals are Nadeau and Bengio's corrected resampled t, "
        f"adjusted for {tested} tests (Holm) and {how}. Smallest effect that matters: "
        f"±{format_value(result['headline'], float(result['min_effect']))}{share}."
    )


def reference_line(result: dict[str, Any]) -> str:
    """Gradient boosting beside the best config on the same rows ("" when none was fitted)."""
    reference = result.get("reference")
    if not reference or not reference.get("mean"):
        return ""
    ours, theirs = reference["best_mean"], reference["mean"]
    metric = headline(result)
    effect = Effect.from_dict(reference["effect"])
    parts = [
        f"{label(metric)} {format_value(metric, theirs.get(metric))} vs the best config's "
        f"{format_value(metric, ours.get(metric))}"
    ]
    if effect.has_interval:
        parts[0] += (
            f" (difference {format_value(metric, effect.mean, signed=True)}, 95% CI "
            f"{format_value(metric, effect.low, signed=True)} to "
            f"{format_value(metric, effect.high, signed=True)})"
        )
    for name in ("assess_accuracy", "assess_rmse", "assess_r2", "test_loss", "test_accuracy"):
        if theirs.get(name) is not None and ours.get(name) is not None:
            parts.append(
                f"{label(name).removeprefix('assessment ')} {format_value(name, theirs[name])} vs "
                f"{format_value(name, ours[name])}"
            )
    return (
        f"Reference, not a regularizer: gradient boosting (scikit-learn's {reference['model']}, "
        f"defaults) on the same rows over {reference['repetitions']} repetitions: "
        + "; ".join(parts)
        + "."
    )


def epochs_line(result: dict[str, Any]) -> str:
    """A warning when the best config was still improving at max_epochs ("" otherwise):
    then every effect is measured on networks cut short, and a longer budget may change it."""
    runs = [run for run in result["rows"][0]["runs"] if run.get("best_epoch")]
    max_epochs = int(result["max_epochs"])
    at_end = sum(1 for run in runs if run["best_epoch"] >= max_epochs)
    if not runs or at_end * 2 < len(runs):
        return ""
    return (
        f"The best config was still improving at the last epoch in {at_end} of {len(runs)} "
        f"runs (its best epoch was {max_epochs}, train.max_epochs): its effects are those of "
        "networks cut short; a larger train.max_epochs (a new study) may change them."
    )


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
    from regsweep.insight.rendering import render

    return render(
        "verdict.md",
        study=study_name,
        result=result,
        findings=findings(result),
        design=design_line(result),
        reference=reference_line(result),
        cut_short=epochs_line(result),
    )
