"""One self-contained HTML report of a study: what helped, by how much, and why.

regsweep report sweeps/mnist.yaml -o report.html

Plotly's JavaScript is embedded once, so the file opens offline in any browser. The
sections are data (``insight.sections``); ``templates/report.html`` is the markup. The
answer's sections (verdict, effects, why, paths) come from ``insight.report_answer``.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from markupsafe import Markup
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState
from plotly.offline import get_plotlyjs

from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.data.tasks import scores_text
from regsweep.insight import figures
from regsweep.insight.ablation import stored_ablation
from regsweep.insight.outputs import write_atomic
from regsweep.insight.paths import stored_paths
from regsweep.insight.rendering import render
from regsweep.insight.report_answer import (
    effects_section,
    paths_section,
    verdict_section,
    why_section,
)
from regsweep.insight.sections import Cell, Section
from regsweep.insight.studyview import (
    fixed_params,
    is_unregularized,
    require_best,
    require_config,
    state_counts,
    varied_params,
)
from regsweep.sweep.progress import format_param

# PED-ANOVA, not fANOVA: fANOVA fits a random forest whose cost grows with the trial
# count (Optuna 5 made PED-ANOVA its default for this reason); PED-ANOVA compares the
# parameter distributions of the top 10% of trials with all of them, in linear time.
IMPORTANCE_EVALUATOR = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"


def write_report(study: optuna.Study, path: Path) -> Path:
    """Render the report of ``study`` into ``path`` (written whole or not at all)."""
    text = build_report(study)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def build_report(study: optuna.Study) -> str:
    config = require_config(study)
    best = require_best(study)
    trials = study.get_trials(deepcopy=False)
    ablation = stored_ablation(study)
    paths = stored_paths(study)
    with warnings.catch_warnings():
        # Optuna marks some plots experimental; the report is no place for that warning.
        warnings.simplefilter("ignore")
        sections = [
            verdict_section(ablation, best, study.study_name),
            effects_section(ablation),
            why_section(ablation),
            paths_section(paths, best, study.study_name),
            summary_section(study, config, best, trials),
            history_section(study),
            importance_section(study),
            parallel_section(study),
            slices_section(study),
            learning_section(trials, best),
            gap_section(trials, best, config, ablation),
            sparsity_section(trials, study),
            batch_norm_section(trials, study),
            patience_section(trials, study, config),
        ]
    return render(
        "report.html",
        name=study.study_name,
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        plotly_js=Markup(get_plotlyjs()),
        sections=sections,
    )


# Sections -------------------------------------------------------------------------------


def summary_section(
    study: optuna.Study, config: SweepConfig, best: FrozenTrial, trials: list[FrozenTrial]
) -> Section:
    section = Section("summary", "Study summary")
    finished = [t for t in trials if t.state.is_finished()]
    counts = state_counts(trials)
    trained = sum(int(t.user_attrs.get("epochs_run", 0)) for t in finished)
    budget = len(finished) * config.train.max_epochs
    saved = f" ({1 - trained / budget:.0%} saved by pruning and early stopping)" if budget else ""
    compute = sum((_took(t) for t in finished), timedelta())
    starts = [t.datetime_start for t in finished if t.datetime_start is not None]
    ends = [t.datetime_complete for t in finished if t.datetime_complete is not None]
    wall = (max(ends) - min(starts)) if starts and ends else timedelta()
    scores = scores_text(best.user_attrs)
    fixed = fixed_params(study)
    best_value = (
        f"{best.value:.5f} validation loss, trial #{best.number}"
        + (f", {scores}" if scores else "")
        + (
            f", best epoch {best.user_attrs['best_epoch']}"
            if "best_epoch" in best.user_attrs
            else ""
        )
    )
    rows: list[tuple[str, str]] = [
        ("study", study.study_name),
        ("storage", config.study.storage),
        (
            "data",
            f"{config.data.dataset}"
            + (f", first {config.data.limit} training samples" if config.data.limit else "")
            + f", {config.data.val_fraction:.0%} held out for validation",
        ),
        (
            "network",
            f"MLP {config.model.hidden} ({config.model.activation}), {config.train.optimizer}"
            f" lr {config.train.lr:g}, batch {config.train.batch_size}, "
            f"up to {config.train.max_epochs} epochs",
        ),
        (
            "trials by state",
            ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (budget {config.study.n_trials})",
        ),
        ("best value", best_value),
        (
            "best params",
            " · ".join(
                format_param(n, best.params[n]) + (" (fixed)" if n in fixed else "")
                for n in REGULARIZERS
                if n in best.params
            ),
        ),
        (
            "time spent",
            f"{_duration(compute)} of training over {len(finished)} finished trials "
            f"(wall clock {_duration(wall)})",
        ),
        (
            "epochs trained",
            f"{trained} of the unpruned budget {len(finished)} trials × "
            f"{config.train.max_epochs} epochs = {budget}{saved}",
        ),
    ]
    section.table(
        ["", ""],
        [[Cell(what), Cell(text, strong=what == "best value")] for what, text in rows],
        header=False,
        css="summary",
    )
    return section


def _took(trial: FrozenTrial) -> timedelta:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return timedelta()
    return trial.datetime_complete - trial.datetime_start


def _duration(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def history_section(study: optuna.Study) -> Section:
    section = Section(
        "history",
        "Optimization history",
        "Each completed trial's best validation loss, and the best so far.",
    )
    fig = optuna.visualization.plot_optimization_history(study)
    section.figure(figures.style(fig, "Optimization history"))
    return section


def importance_section(study: optuna.Study) -> Section:
    varied = varied_params(study)
    section = Section(
        "importances",
        "Parameter importances",
        f"How much of the variation in validation loss each regularizer explains, "
        f"estimated by {IMPORTANCE_EVALUATOR} over the completed trials.",
    )
    _note_fixed(section, study, "has no importance")
    try:
        if not varied:
            raise ValueError("no regularizer varied")
        fig = optuna.visualization.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), params=varied
        )
    except (ValueError, RuntimeError) as exc:
        section.note(f"Importances cannot be estimated for this study yet: {exc}")
        return section
    section.figure(figures.style(fig, "Parameter importances (PED-ANOVA)"))
    return section


def _note_fixed(section: Section, study: optuna.Study, what: str) -> None:
    fixed = fixed_params(study)
    if fixed:
        named = ", ".join(format_param(n, v) for n, v in fixed.items())
        section.note(f"Fixed in every trial, so it {what}: {named}.")


def parallel_section(study: optuna.Study) -> Section:
    section = Section(
        "parallel",
        "Parallel coordinates",
        "Every completed trial as a line through its regularizer values to its loss.",
    )
    varied = varied_params(study)
    fig = optuna.visualization.plot_parallel_coordinate(study, params=varied or None)
    section.figure(figures.style(fig, "Parallel coordinates"))
    return section


def slices_section(study: optuna.Study) -> Section:
    section = Section(
        "slices",
        "One slice per regularizer",
        "Validation loss against each regularizer's value; colour is the trial number.",
    )
    for name in varied_params(study):
        fig = optuna.visualization.plot_slice(study, params=[name])
        section.figure(figures.style(fig, f"Slice: {name}", height=380), name)
    _note_fixed(section, study, "has no slice")
    return section


def learning_section(trials: list[FrozenTrial], best: FrozenTrial) -> Section:
    n_pruned = sum(1 for t in trials if t.state == TrialState.PRUNED)
    section = Section(
        "learning-curves",
        "Learning curves",
        f"Validation loss per epoch of every trial. The best trial is green and thick; "
        f"{n_pruned} pruned trial(s) are dotted orange and end in an ×.",
    )
    section.figure(figures.learning_curves(trials, best.number))
    return section


def gap_section(
    trials: list[FrozenTrial],
    best: FrozenTrial,
    config: SweepConfig,
    ablation: dict[str, Any] | None,
) -> Section:
    section = Section(
        "generalization-gap",
        "Generalization gap",
        "Train against validation loss per epoch: the shaded gap is variance (overfitting); "
        "high losses on both sides are bias.",
    )
    max_epochs = config.train.max_epochs
    left = figures.Curve(
        f"best trial #{best.number}",
        list(best.user_attrs.get("train_loss", [])),
        figures.val_curve(best),
    )
    plain = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.value is not None
        and is_unregularized(t.params, max_epochs)
        and t.user_attrs.get("train_loss")
    ]
    right: figures.Curve | None = None
    if plain:
        chosen = min(plain, key=lambda t: t.value if t.value is not None else float("inf"))
        right = figures.Curve(
            f"best trial without regularization #{chosen.number}",
            list(chosen.user_attrs["train_loss"]),
            figures.val_curve(chosen),
        )
    else:
        curve = (ablation or {}).get("curves", {}).get("none")
        if curve:
            section.note(
                "The right panel is the ablation's retrain of the best config with every "
                f"regularizer off (its first repetition, seed {curve['seed']}).",
                strong="This study has no trial without any regularization.",
            )
            right = figures.Curve(
                "no regularization (ablation retrain)", curve["train_loss"], curve["val_loss"]
            )
        else:
            section.note(
                "There is nothing to compare against. Run `regsweep ablate`: its "
                "no-regularization retrain fills the right panel.",
                strong="This study has no trial without any regularization.",
            )
    missing = (
        "No trial without regularization in this study.<br>Run `regsweep ablate` to train one."
    )
    section.figure(figures.generalization_gap(left, right, missing))
    return section


def sparsity_section(trials: list[FrozenTrial], study: optuna.Study) -> Section:
    section = Section(
        "sparsity",
        "Weight sparsity against L1 strength",
        "The share of weights L1 pushed to (nearly) zero, per trial.",
    )
    if "l1" in fixed_params(study):
        section.note(f"L1 was fixed at {study.best_trial.params.get('l1')} in every trial.")
    section.figure(figures.sparsity_vs_l1(trials))
    return section


def batch_norm_section(trials: list[FrozenTrial], study: optuna.Study) -> Section:
    section = Section(
        "batch-norm",
        "Batch norm on vs off",
        "The best validation loss reached with and without batch norm; circles are the "
        "individual completed trials.",
    )
    if "batch_norm" in fixed_params(study):
        section.note("Batch norm had the same setting in every trial: there is no comparison.")
    section.figure(figures.batch_norm_effect(trials))
    return section


def patience_section(
    trials: list[FrozenTrial], study: optuna.Study, config: SweepConfig
) -> Section:
    section = Section(
        "patience",
        "Epochs run against patience",
        "How long each trial trained for its early-stopping patience; the dashed line is "
        "max_epochs (patience at or above it switches early stopping off).",
    )
    if "patience" in fixed_params(study):
        section.note("Patience was fixed in every trial.")
    section.figure(figures.epochs_vs_patience(trials, config.train.max_epochs))
    return section
