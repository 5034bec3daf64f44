"""The report's regsweep-specific charts, built with Plotly from a study's trials.

Optuna's own plots (history, importances, slices, parallel coordinates) come from
``optuna.visualization``; these add what only regsweep records per trial: loss
curves, weight sparsity, epochs run, and the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from regsweep.insight.ablation import format_delta, verdict

HEIGHT = 440
STATE_STYLE: dict[TrialState, tuple[str, str]] = {  # colour, line dash
    TrialState.COMPLETE: ("#1f77b4", "solid"),
    TrialState.PRUNED: ("#ff7f0e", "dot"),
    TrialState.FAIL: ("#d62728", "dash"),
}
TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#d62728"


@dataclass(frozen=True)
class Curve:
    """Train and validation loss per epoch of one run, with a title saying which run."""

    title: str
    train_loss: list[float]
    val_loss: list[float]


def style(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 30, "t": 60, "b": 50},
    )
    return fig


def val_curve(trial: FrozenTrial) -> list[float]:
    """Validation loss per epoch: the user attr, else the reported intermediate values."""
    curve = trial.user_attrs.get("val_loss")
    if isinstance(curve, list) and curve:
        return [float(v) for v in curve]
    return [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]


def learning_curves(trials: list[FrozenTrial], best_number: int | None) -> go.Figure:
    """Validation loss per epoch of every trial; pruned ones dotted and marked where cut."""
    fig = go.Figure()
    legend_shown: set[TrialState] = set()
    pruned_x: list[int] = []
    pruned_y: list[float] = []
    pruned_text: list[str] = []
    best_trace: go.Scatter | None = None
    for trial in trials:
        curve = val_curve(trial)
        if not curve or trial.state not in STATE_STYLE:
            continue
        colour, dash = STATE_STYLE[trial.state]
        epochs = list(range(1, len(curve) + 1))
        hover = f"trial {trial.number} ({trial.state.name.lower()})<br>epoch %{{x}}"
        hover += "<br>val loss %{y:.4f}<extra></extra>"
        if trial.number == best_number:
            best_trace = go.Scatter(
                x=epochs,
                y=curve,
                mode="lines+markers",
                name=f"best trial #{trial.number}",
                line={"color": "#2ca02c", "width": 4},
                hovertemplate=hover,
            )
            continue
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=curve,
                mode="lines",
                name=trial.state.name.lower(),
                legendgroup=trial.state.name,
                showlegend=trial.state not in legend_shown,
                line={"color": colour, "dash": dash, "width": 1.5},
                opacity=0.75,
                hovertemplate=hover,
            )
        )
        legend_shown.add(trial.state)
        if trial.state == TrialState.PRUNED:
            pruned_x.append(epochs[-1])
            pruned_y.append(curve[-1])
            pruned_text.append(f"trial {trial.number} pruned after epoch {epochs[-1]}")
    if pruned_x:
        fig.add_trace(
            go.Scatter(
                x=pruned_x,
                y=pruned_y,
                mode="markers",
                name="pruned here",
                marker={"symbol": "x", "size": 11, "color": "#ff7f0e", "line": {"width": 1}},
                text=pruned_text,
                hovertemplate="%{text}<extra></extra>",
            )
        )
    if best_trace is not None:
        fig.add_trace(best_trace)  # drawn last, so it stays on top
    fig.update_xaxes(title="epoch", dtick=1 if _max_len(trials) <= 30 else None)
    fig.update_yaxes(title="validation loss")
    return style(fig, "Learning curves: validation loss per epoch (pruned trials dotted, × = cut)")


def _max_len(trials: list[FrozenTrial]) -> int:
    return max((len(val_curve(t)) for t in trials), default=0)


def generalization_gap(left: Curve, right: Curve | None, missing: str) -> go.Figure:
    """Train vs validation loss per epoch, side by side; the shaded band is the gap."""
    titles = [left.title, right.title if right is not None else "no run without regularization"]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=titles)
    for col, curve in ((1, left), (2, right)):
        if curve is None:
            fig.add_annotation(
                text=missing,
                xref="x2 domain",
                yref="y2 domain",
                x=0.5,
                y=0.5,
                showarrow=False,
                align="center",
                font={"size": 13},
                bgcolor="#fff3cd",
                bordercolor="#d39e00",
            )
            fig.update_xaxes(visible=False, row=1, col=2)
            continue
        epochs = list(range(1, len(curve.val_loss) + 1))
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=curve.train_loss,
                mode="lines+markers",
                name="train loss",
                line={"color": TRAIN_COLOUR},
                legendgroup="train",
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=curve.val_loss,
                mode="lines+markers",
                name="validation loss (gap shaded)",
                line={"color": VAL_COLOUR},
                fill="tonexty",
                fillcolor="rgba(214, 39, 40, 0.12)",
                legendgroup="val",
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title="epoch", row=1, col=col)
    fig.update_yaxes(title="loss", row=1, col=1)
    style(fig, "Generalization gap: train vs validation loss per epoch")
    fig.update_layout(margin={"t": 100})  # room for the title above the panel titles
    return fig


def sparsity_vs_l1(trials: list[FrozenTrial]) -> go.Figure:
    """Fraction of near-zero weights against L1 strength: what L1 buys."""
    fig = go.Figure()
    points = [
        t
        for t in trials
        if "l1" in t.params and isinstance(t.user_attrs.get("weight_sparsity"), float)
    ]
    for state, (colour, _) in STATE_STYLE.items():
        chosen = [t for t in points if t.state == state]
        if not chosen:
            continue
        fig.add_trace(
            go.Scatter(
                x=[t.params["l1"] for t in chosen],
                y=[t.user_attrs["weight_sparsity"] for t in chosen],
                mode="markers",
                name=state.name.lower(),
                marker={"color": colour, "size": 10, "opacity": 0.8},
                text=[f"trial {t.number}" for t in chosen],
                hovertemplate="%{text}<br>l1 %{x:.3g}<br>sparsity %{y:.2%}<extra></extra>",
            )
        )
    positive = all(float(t.params["l1"]) > 0 for t in points)
    fig.update_xaxes(
        title="L1 strength" + (" (log)" if positive else ""), type="log" if positive else "linear"
    )
    fig.update_yaxes(title="weights with |w| < 1e-3", tickformat=".1%")
    return style(fig, "Weight sparsity against L1 strength")


def batch_norm_effect(trials: list[FrozenTrial]) -> go.Figure:
    """Best validation loss with batch norm off and on, over every completed trial."""
    groups: dict[str, list[FrozenTrial]] = {"off": [], "on": []}
    for trial in trials:
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            groups["on" if trial.params.get("batch_norm") else "off"].append(trial)
    fig = go.Figure()
    labels = [f"batch norm {k}" for k, v in groups.items() if v]
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[min(t.value for t in v if t.value is not None) for v in groups.values() if v],
            name="best validation loss",
            marker_color=["#9ecae1", "#3182bd"][: len(labels)],
            texttemplate="%{y:.4f}",
            textposition="inside",
            insidetextanchor="start",
        )
    )
    xs, ys, texts = [], [], []
    for key, chosen in groups.items():
        for trial in chosen:
            xs.append(f"batch norm {key}")
            ys.append(trial.value)
            texts.append(f"trial {trial.number}")
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            name="each completed trial",
            marker={"color": "#333", "size": 8, "symbol": "circle-open"},
            text=texts,
            hovertemplate="%{text}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_yaxes(title="validation loss (lower is better)", rangemode="tozero")
    return style(fig, "Best validation loss with batch norm off vs on")


def epochs_vs_patience(trials: list[FrozenTrial], max_epochs: int) -> go.Figure:
    """Epochs each trial ran against its patience: where early stopping cut training short."""
    fig = go.Figure()
    outcomes: dict[str, tuple[str, list[FrozenTrial]]] = {
        "stopped early": ("#2ca02c", []),
        f"ran all {max_epochs} epochs": ("#1f77b4", []),
        "pruned": ("#ff7f0e", []),
        "failed": ("#d62728", []),
    }
    for trial in trials:
        if "patience" not in trial.params or "epochs_run" not in trial.user_attrs:
            continue
        if trial.state == TrialState.PRUNED:
            key = "pruned"
        elif trial.state == TrialState.FAIL:
            key = "failed"
        elif trial.user_attrs.get("stopped_early"):
            key = "stopped early"
        else:
            key = f"ran all {max_epochs} epochs"
        outcomes[key][1].append(trial)
    for name, (colour, chosen) in outcomes.items():
        if chosen:
            fig.add_trace(
                go.Scatter(
                    x=[t.params["patience"] for t in chosen],
                    y=[t.user_attrs["epochs_run"] for t in chosen],
                    mode="markers",
                    name=name,
                    marker={"color": colour, "size": 10, "opacity": 0.8},
                    text=[f"trial {t.number}" for t in chosen],
                    hovertemplate="%{text}<br>patience %{x}<br>epochs run %{y}<extra></extra>",
                )
            )
    fig.add_hline(y=max_epochs, line_dash="dash", line_color="#888", annotation_text="max_epochs")
    fig.update_xaxes(title="patience (epochs without improvement)")
    fig.update_yaxes(title="epochs run", rangemode="tozero")
    return style(fig, "Epochs run against early-stopping patience")


def ablation_bars(result: dict[str, Any]) -> go.Figure:
    """Mean loss per ablation variant with one-sd error bars; * marks real differences."""
    rows = result["rows"]
    labels = [row["label"] for row in rows]
    fig = go.Figure()
    for metric, colour, name in (
        ("val_loss", "#3182bd", "validation loss"),
        ("test_loss", "#e6550d", "test loss"),
    ):
        if all(row["mean"][metric] is None for row in rows):
            continue
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[row["mean"][metric] for row in rows],
                error_y={"type": "data", "array": [row["std"][metric] for row in rows]},
                name=f"{name} (mean ± sd over {len(result['seeds'])} seeds)",
                marker_color=colour,
                text=["*" if verdict(row, metric) else "" for row in rows],
                textposition="outside",
                textfont={"size": 18},
                hovertext=[_mark(row, metric) for row in rows],
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="loss (lower is better)", rangemode="tozero")
    return style(
        fig, "Ablation: the best config with each regularizer removed (* = beyond seed spread)"
    )


def _mark(row: dict[str, Any], metric: str) -> str:
    word = verdict(row, metric)
    return f"{format_delta(row, metric).rstrip(' *')} {word}".strip() if word else ""
