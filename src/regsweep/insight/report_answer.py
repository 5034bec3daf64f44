"""The report's answer: the verdict box, the effects with intervals, the why, the paths.

Built from the stored ablation and paths (``insight.ablation``, ``insight.paths``); an
ablation stored by an older regsweep is shown with a note saying so (``insight.legacy``).
"""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from regsweep.insight import figures
from regsweep.insight.ablation import (
    correction_ratio,
    effects_of,
    format_effect,
    format_mean,
    headline,
    is_current,
    stored_metrics,
)
from regsweep.insight.effects import Effect, paired_effect
from regsweep.insight.metrics import LOWER_IS_BETTER, label
from regsweep.insight.paths import point_effect
from regsweep.insight.sections import Cell, FindingItem, Findings, Section
from regsweep.insight.verdict import (
    design_line,
    epochs_line,
    findings,
    reference_line,
    why_rows,
)
from regsweep.sweep.progress import format_param


def _stale(section: Section, result: dict[str, Any], best: FrozenTrial, command: str) -> None:
    if result["trial"] != best.number:
        section.note(
            f"This retrained trial #{result['trial']}, but the best trial is now "
            f"#{best.number}: run `regsweep {command}` again to update it."
        )


def verdict_section(ablation: dict[str, Any] | None, best: FrozenTrial, name: str) -> Section:
    section = Section(
        "verdict",
        "Verdict: which regularizer helps, by how much, and why",
        "Each regularizer's effect is the assessment loss without it minus with it: every "
        "repetition draws fresh rows to train on, to stop early on and to assess on, and "
        "all variants of a repetition share those rows, their initial weights and their "
        "mini-batches, so the difference is the regularizer's alone, measured on rows that "
        "chose nothing. A positive effect means it helps. Each regularizer is decided: "
        "helps or hurts (its interval excludes 0), negligible (its interval lies inside "
        "the smallest effect that matters), or undecided.",
    )
    if ablation is None:
        section.note(
            f"No verdict yet: run `regsweep ablate --study {name}` (with the same "
            "--storage) and render this report again."
        )
        return section
    if not is_current(ablation):
        section.note(str(ablation.get("legacy_note", "")), strong="An older verdict.")
    _stale(section, ablation, best, "ablate")
    section.parts.append(
        Findings([FindingItem(f.word, f.sentence, f.evidence) for f in findings(ablation)])
    )
    reference = reference_line(ablation)
    if reference:
        section.note(reference, strong="Should an MLP be used here at all?")
    cut_short = epochs_line(ablation)
    if cut_short:
        section.note(cut_short, strong="Still improving.")
    section.meta(design_line(ablation))
    engine = "One pack per repetition" if ablation.get("engine") == "packed" else "One model"
    section.meta(
        f"{engine}, on {ablation['created']}. Runs with early stopping are measured at the epoch "
        "their validation rows chose, runs without it at their last epoch."
    )
    return section


def effects_section(ablation: dict[str, Any] | None) -> Section:
    section = Section(
        "effects",
        "Effects with confidence intervals",
        "Each dot is a regularizer's effect (without it − with it); the whiskers are the "
        "interval its decision rests on, the solid line is zero and the dotted lines the "
        "smallest effect that matters. Green helps, red hurts, blue negligible, grey "
        "undecided.",
    )
    if ablation is None:
        section.note("Appears once `regsweep ablate` has run.")
        return section
    metric = headline(ablation)
    bars = [
        figures.EffectBar(f.title, f.effect.mean, f.effect.low, f.effect.high, f.word)
        for f in findings(ablation)
        if f.effect is not None and f.effect.mean is not None
    ]
    runs = len(ablation["seeds"])
    section.figure(
        figures.effect_plot(bars, label(metric), runs, float(ablation.get("min_effect") or 0.0))
    )
    effects = effects_of(ablation)
    off = [row["label"] for row in ablation["rows"][1:] if row["same_as"] == "best"]
    if off:
        section.note(
            "Not shown, off in the best config already (the same runs as the best config): "
            + ", ".join(off)
            + "."
        )
    metrics = [
        m for m in stored_metrics(ablation) if ablation.get("has_test") or not m.startswith("test")
    ]
    if not ablation.get("has_test"):
        section.note("The data set has no test split: test metrics are absent.")
    rows = []
    for row in ablation["rows"]:
        cells = [Cell(row["label"]), Cell(_changed(row, ablation))]
        for m in metrics:
            mean = format_mean(row, m)
            if row["key"] == "best" or row["same_as"] == "best":
                cells.append(Cell(mean, "\u00a0"))
                continue
            effect = effects[row["key"]][m]
            cells.append(Cell(mean, format_effect(effect, m), _direction_css(effect, m)))
        rows.append(cells)
    section.table(["variant", "changed", *(label(m) for m in metrics)], rows, css="ablation")
    section.meta(
        "Each cell: the mean over repetitions, then the difference from the best config "
        "[95% CI, not adjusted]: assessment and validation metrics paired per repetition "
        "(corrected resampled t); test metrics per test row, averaged over repetitions (t "
        "over rows). Red: removing it made the metric worse (it helps), green: better."
        if is_current(ablation)
        else "Each cell: the mean over seeds, then the paired difference from the best "
        "config [95% CI]; red: removing it made the metric worse (it helps), green: better."
    )
    return section


def _direction_css(effect: Effect, metric: str) -> str:
    if not effect.excludes_zero() or effect.mean is None:
        return ""
    worse = effect.mean > 0 if LOWER_IS_BETTER[metric] else effect.mean < 0
    return "worse" if worse else "better"


def why_section(ablation: dict[str, Any] | None) -> Section:
    section = Section(
        "why",
        "The why, measured",
        "The best config against its twin without any regularization (same rows, same "
        "initial weights, same batches), averaged over repetitions: each number next to the "
        "effect it explains.",
    )
    if ablation is None:
        section.note("Appears once `regsweep ablate` has run.")
        return section
    rows = [[Cell(c) for c in row] for row in why_rows(ablation)]
    section.table(["measured", "number", "explains"], rows, css="why")
    return section


def paths_section(paths: dict[str, Any] | None, best: FrozenTrial, name: str) -> Section:
    section = Section(
        "paths",
        "Dose-response paths",
        "The best config retrained at a grid of strengths of one regularizer at a time (the "
        "others stay at the best config's values), over the same repetitions as the "
        "verdict and paired with the best config itself. Unlike a slice of the study, "
        "where every parameter moves at once, only this one moves: the curve is its "
        "effect, on the assessment rows, with a 95% band per point. The star is the best "
        "config's value.",
    )
    if paths is None:
        section.note(
            f"Not run yet. Run `regsweep paths --study {name}` (with the same --storage) and "
            "render this report again."
        )
        return section
    if "design" not in paths:
        section.note(
            "These paths came from the older design (seeds on the validation rows that "
            "chose the config); run `regsweep paths` again.",
            strong="Older paths.",
        )
    _stale(section, paths, best, "paths")
    runs = len(paths["seeds"])
    metric = headline(paths)
    # The gap is measured on assessment rows too, which repetitions share: corrected as
    # the effects are (older paths, on fixed rows: ratio 0, the plain t).
    ratio = correction_ratio(paths["runs"]["best"])
    for reg, points in paths["paths"].items():
        shown = []
        for point in points:
            effect = point_effect(paths, point["key"])
            gaps = [run.get("gap") for run in paths["runs"][point["key"]]]
            band = paired_effect(gaps, [0.0] * len(gaps), ratio=ratio)
            gap, gap_low, gap_high = band.mean, band.low, band.high
            shown.append(
                figures.PathPoint(
                    point["label"],
                    point["is_best"],
                    effect.mean,
                    effect.low,
                    effect.high,
                    gap,
                    gap_low,
                    gap_high,
                )
            )
        section.figure(figures.dose_response(reg, shown, label(metric), runs), reg)
    return section


def _changed(row: dict[str, Any], ablation: dict[str, Any]) -> str:
    if row["key"] == "best":
        return ", ".join(format_param(n, v) for n, v in row["params"].items())
    if row["same_as"]:
        return f"already off in best (same runs as {row['same_as']})"
    best_params = ablation["rows"][0]["params"]
    changes = [format_param(n, v) for n, v in row["params"].items() if best_params.get(n) != v]
    return ", ".join(changes)
