"""One self-contained HTML report of a study: what helped, by how much, and why.

regsweep report sweeps/mnist.yaml -o report.html

Plotly's JavaScript is embedded once, so the file opens offline in any browser.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState
from plotly.offline import get_plotlyjs

from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.data.tasks import scores_text
from regsweep.insight import figures
from regsweep.insight.ablation import (
    effects_of,
    format_effect,
    format_mean,
    stored_ablation,
    stored_metrics,
)
from regsweep.insight.effects import classify, mean_interval
from regsweep.insight.metrics import HEADLINE, LOWER_IS_BETTER, label
from regsweep.insight.outputs import write_atomic
from regsweep.insight.paths import point_effect, stored_paths
from regsweep.insight.studyview import (
    fixed_params,
    is_unregularized,
    require_best,
    require_config,
    state_counts,
    varied_params,
)
from regsweep.insight.verdict import findings, why_rows
from regsweep.sweep.progress import format_param

# PED-ANOVA, not fANOVA: fANOVA fits a random forest whose cost grows with the trial
# count (Optuna 5 made PED-ANOVA its default for this reason); PED-ANOVA compares the
# parameter distributions of the top 10% of trials with all of them, in linear time.
IMPORTANCE_EVALUATOR = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""  # HTML
    parts: list[str] = field(default_factory=list)  # HTML fragments: figures, tables, notes

    def figure(self, fig: go.Figure, suffix: str = "") -> None:
        div_id = f"fig-{self.id}{'-' + suffix if suffix else ''}"
        self.parts.append(
            fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
        )

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{text}</p>')

    def meta(self, text: str) -> None:
        self.parts.append(f'<p class="meta">{text}</p>')

    def render(self) -> str:
        intro = f'<p class="intro">{self.intro}</p>' if self.intro else ""
        body = "\n".join(self.parts)
        return f'<section id="{self.id}">\n<h2>{self.title}</h2>\n{intro}\n{body}\n</section>'


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
    return page(study.study_name, sections)


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
    rows: list[tuple[str, ...]] = [
        ("study", html.escape(study.study_name)),
        ("storage", html.escape(config.study.storage)),
        (
            "data",
            html.escape(
                f"{config.data.dataset}"
                + (f", first {config.data.limit} training samples" if config.data.limit else "")
                + f", {config.data.val_fraction:.0%} held out for validation"
            ),
        ),
        (
            "network",
            html.escape(
                f"MLP {config.model.hidden} ({config.model.activation}), {config.train.optimizer}"
                f" lr {config.train.lr:g}, batch {config.train.batch_size}, "
                f"up to {config.train.max_epochs} epochs"
            ),
        ),
        (
            "trials by state",
            ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (budget {config.study.n_trials})",
        ),
        (
            "best value",
            f"<b>{best.value:.5f}</b> validation loss, trial #{best.number}"
            + (f", {scores}" if scores else "")
            + (
                f", best epoch {best.user_attrs['best_epoch']}"
                if "best_epoch" in best.user_attrs
                else ""
            ),
        ),
        (
            "best params",
            " · ".join(
                html.escape(format_param(n, best.params[n]))
                + (" <i>(fixed)</i>" if n in fixed else "")
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
    section.parts.append(_table(["", ""], rows, header=False, css="summary"))
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
        section.note(f"Importances cannot be estimated for this study yet: {html.escape(str(exc))}")
        return section
    section.figure(figures.style(fig, "Parameter importances (PED-ANOVA)"))
    return section


def _note_fixed(section: Section, study: optuna.Study, what: str) -> None:
    fixed = fixed_params(study)
    if fixed:
        named = ", ".join(html.escape(format_param(n, v)) for n, v in fixed.items())
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
                "<b>This study has no trial without any regularization.</b> The right panel "
                f"is the ablation's retrain of the best config with every regularizer off "
                f"(seed {curve['seed']})."
            )
            right = figures.Curve(
                "no regularization (ablation retrain)", curve["train_loss"], curve["val_loss"]
            )
        else:
            section.note(
                "<b>This study has no trial without any regularization</b>, so there is "
                "nothing to compare against. Run <code>regsweep ablate</code>: its "
                "no-regularization retrain fills the right panel."
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


def _stale(section: Section, result: dict[str, Any], best: FrozenTrial, command: str) -> None:
    if result["trial"] != best.number:
        section.note(
            f"This retrained trial #{result['trial']}, but the best trial is now "
            f"#{best.number}: run <code>regsweep {command}</code> again to update it."
        )


def verdict_section(ablation: dict[str, Any] | None, best: FrozenTrial, name: str) -> Section:
    seeds = len(ablation["seeds"]) if ablation else 0
    section = Section(
        "verdict",
        "Verdict: which regularizer helps, by how much, and why",
        f"Each regularizer's effect is {label(HEADLINE)} <i>without it</i> minus <i>with "
        "it</i>, paired per seed: every variant of a seed starts from the same initial "
        "weights and sees the same mini-batches as the best config, so the difference is "
        "the regularizer's alone. A positive effect means it helps. The 95% confidence "
        "interval is Student's t on the paired differences; an interval that includes 0 "
        "means no effect could be measured at this many seeds, and its width says how "
        "large an effect could still hide in it.",
    )
    if ablation is None:
        section.note(
            "No verdict yet: run <code>regsweep ablate --study "
            f"{html.escape(name)} --seeds 3</code> (with the same --storage) and render this "
            "report again."
        )
        return section
    _stale(section, ablation, best, "ablate")
    items = []
    for finding in findings(ablation):
        css = (finding.verdict or "off").replace(" ", "-")
        evidence = (
            f'<div class="why">why: {html.escape(finding.evidence)}</div>'
            if finding.evidence
            else ""
        )
        items.append(
            f'<li class="finding {css}"><span class="tag">{html.escape(finding.verdict or "off")}'
            f"</span> {html.escape(finding.sentence)}{evidence}</li>"
        )
    section.parts.append(f'<ul class="verdict-box" id="verdict-box">{"".join(items)}</ul>')
    section.meta(
        f"Trial #{ablation['trial']} retrained with {seeds} paired seed(s) "
        f"({', '.join(str(s) for s in ablation['seeds'])}), "
        f"{'one pack per seed' if ablation.get('engine') == 'packed' else 'one model at a time'}"
        f", on {ablation['created']}. Rows with early stopping are measured on their best "
        "epoch's weights, rows without it on their last epoch's."
    )
    return section


def effects_section(ablation: dict[str, Any] | None) -> Section:
    section = Section(
        "effects",
        "Effects with confidence intervals",
        "Each dot is a regularizer's paired effect (without it − with it); the whiskers are "
        "its 95% confidence interval and the line is zero: a whisker that crosses it is no "
        "measurable effect. Green helps, red hurts, grey: not measurable.",
    )
    if ablation is None:
        section.note("Appears once <code>regsweep ablate</code> has run.")
        return section
    effects = effects_of(ablation)
    metrics = [
        m for m in stored_metrics(ablation) if ablation.get("has_test") or not m.startswith("test")
    ]
    shown = [row for row in ablation["rows"][1:] if row["same_as"] != "best"]
    for metric in metrics:
        if not metric.endswith("loss"):
            continue
        bars = []
        for row in shown:
            effect = effects[row["key"]][metric]
            if effect.mean is None:
                continue
            bars.append(
                figures.EffectBar(
                    row["label"],
                    effect.mean,
                    effect.low,
                    effect.high,
                    classify(effect, LOWER_IS_BETTER[metric]),
                )
            )
        suffix = "" if metric == HEADLINE else metric
        section.figure(figures.effect_plot(bars, label(metric), len(ablation["seeds"])), suffix)
    off = [row["label"] for row in ablation["rows"][1:] if row["same_as"] == "best"]
    if off:
        section.note(
            "Not shown, off in the best config already (the same runs as the best config): "
            + html.escape(", ".join(off))
            + "."
        )
    if not ablation.get("has_test"):
        section.note("The data set has no test split: test metrics are absent.")
    headers = ["variant", "changed", *(label(m) for m in metrics)]
    rows = []
    for row in ablation["rows"]:
        cells = [html.escape(row["label"]), html.escape(_changed(row, ablation))]
        for metric in metrics:
            mean = format_mean(row, metric)
            if row["key"] == "best" or row["same_as"] == "best":
                cells.append(f"{mean}<br><small>&nbsp;</small>")
                continue
            effect = effects[row["key"]][metric]
            word = classify(effect, LOWER_IS_BETTER[metric])
            css = {"helps": "worse", "hurts": "better"}.get(word, "")
            text = html.escape(format_effect(effect, metric))
            cells.append(f'{mean}<br><small><span class="{css}">{text}</span></small>')
        rows.append(tuple(cells))
    section.parts.append(_table(headers, rows, css="ablation"))
    section.meta(
        "Each cell: the mean over seeds, then the paired difference from the best config "
        "[95% CI]; red: removing it made the metric worse (it helps), green: better."
    )
    return section


def why_section(ablation: dict[str, Any] | None) -> Section:
    section = Section(
        "why",
        "The why, measured",
        "The best config against its twin without any regularization (same seeds, same "
        "initial weights, same batches), averaged over seeds: each number next to the "
        "effect it explains.",
    )
    if ablation is None:
        section.note("Appears once <code>regsweep ablate</code> has run.")
        return section
    rows = [tuple(html.escape(c) for c in row) for row in why_rows(ablation)]
    section.parts.append(_table(["measured", "number", "explains"], rows, css="why"))
    return section


def paths_section(paths: dict[str, Any] | None, best: FrozenTrial, name: str) -> Section:
    section = Section(
        "paths",
        "Dose-response paths",
        "The best config retrained at a grid of strengths of one regularizer at a time (the "
        "others stay at the best config's values), paired seed by seed with the best config "
        "itself. Unlike a slice of the study, where every parameter moves at once, only "
        "this one moves: the curve is its effect. The star is the best config's value.",
    )
    if paths is None:
        section.note(
            f"Not run yet. Run <code>regsweep paths --study {html.escape(name)} --seeds 3"
            "</code> (with the same --storage) and render this report again."
        )
        return section
    _stale(section, paths, best, "paths")
    seeds = len(paths["seeds"])
    for reg, points in paths["paths"].items():
        shown = []
        for point in points:
            effect = point_effect(paths, point["key"], HEADLINE)
            gap, gap_low, gap_high = mean_interval(
                [run.get("gap") for run in paths["runs"][point["key"]]]
            )
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
        section.figure(figures.dose_response(reg, shown, label(HEADLINE), seeds), reg)
    return section


def _changed(row: dict[str, Any], ablation: dict[str, Any]) -> str:
    if row["key"] == "best":
        return ", ".join(format_param(n, v) for n, v in row["params"].items())
    if row["same_as"]:
        return f"already off in best (same runs as {row['same_as']})"
    best_params = ablation["rows"][0]["params"]
    changes = [format_param(n, v) for n, v in row["params"].items() if best_params.get(n) != v]
    return ", ".join(changes)


# HTML -----------------------------------------------------------------------------------


def _table(
    headers: list[str], rows: list[tuple[str, ...]], *, header: bool = True, css: str = ""
) -> str:
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}">{head}{body}</table>'


CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header { background: #263238; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #b0bec5; }
nav { padding: 8px 32px; background: #eceff1; font-size: 14px; }
nav a { margin-right: 14px; color: #37474f; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 32px 40px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px;
          margin: 18px 0; padding: 4px 20px 16px; }
h2 { font-size: 18px; border-bottom: 1px solid #eee; padding-bottom: 6px; }
p.intro { color: #555; }
p.meta { color: #666; font-size: 13px; }
p.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: 6px 10px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
td, th { padding: 5px 10px; border-bottom: 1px solid #eee; text-align: left; }
table.summary td:first-child { font-weight: 600; white-space: nowrap; color: #455a64; }
table.ablation td, table.ablation th { text-align: right; white-space: nowrap; }
table.ablation td:nth-child(-n+2), table.ablation th:nth-child(-n+2) { text-align: left; }
table.ablation td:nth-child(2) { white-space: normal; max-width: 240px; color: #555;
                                 font-size: 12px; }
table.ablation small { color: #555; }
span.worse { color: #c62828; font-weight: 700; }
ul.verdict-box { list-style: none; padding: 0; margin: 8px 0; }
li.finding { border-left: 6px solid #9e9e9e; background: #f5f5f5; margin: 6px 0;
             padding: 8px 12px; font-size: 15px; }
li.finding.helps { border-color: #2e7d32; background: #e8f5e9; }
li.finding.hurts { border-color: #c62828; background: #ffebee; }
li.finding .tag { font-weight: 700; text-transform: uppercase; font-size: 12px;
                  margin-right: 6px; }
li.finding .why { color: #455a64; font-size: 13px; margin-top: 3px; }
section#verdict { border: 2px solid #263238; }
span.better { color: #2e7d32; font-weight: 700; }
code { background: #eceff1; padding: 1px 4px; border-radius: 3px; }
"""


def page(name: str, sections: list[Section]) -> str:
    links = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>regsweep report: {html.escape(name)}</title>\n"
        f"<style>{CSS}</style>\n"
        # Embedded once: the report needs no network to open.
        f"<script type='text/javascript'>{get_plotlyjs()}</script>\n"
        "</head>\n<body>\n"
        f"<header><h1>regsweep report: {html.escape(name)}</h1>"
        f"<p>generated {generated} by regsweep</p></header>\n"
        f"<nav>{links}</nav>\n<main>\n"
        + "\n".join(s.render() for s in sections)
        + "\n</main>\n</body>\n</html>\n"
    )
