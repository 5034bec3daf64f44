"""The report's regsweep-specific charts, built with Plotly from a study's trials.

Optuna's own plots (history, importances, slices, parallel coordinates) come from
``optuna.visualization``; these add what only regsweep records per trial: loss
curves, weight sparsity, epochs run, and the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

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
    """Validation loss per epoch of every trial; pruned ones dotted and marked where cut.

    One trace per state, the trials separated by gaps: thousands of trials stay one
    Plotly trace each (a trace per trial made the report of a large study slow to
    build and to open).
    """
    fig = go.Figure()
    lines: dict[TrialState, tuple[list[int | None], list[float | None], list[str]]] = {}
    pruned_x: list[int] = []
    pruned_y: list[float] = []
    pruned_text: list[str] = []
    best_trace: go.Scatter | None = None
    for trial in trials:
        curve = val_curve(trial)
        if not curve or trial.state not in STATE_STYLE:
            continue
        epochs = list(range(1, len(curve) + 1))
        if trial.number == best_number:
            best_trace = go.Scatter(
                x=epochs,
                y=curve,
                mode="lines+markers",
                name=f"best trial #{trial.number}",
                line={"color": "#2ca02c", "width": 4},
                hovertemplate=f"best trial {trial.number}<br>epoch %{{x}}"
                "<br>val loss %{y:.4f}<extra></extra>",
            )
            continue
        xs, ys, texts = lines.setdefault(trial.state, ([], [], []))
        name = f"trial {trial.number} ({trial.state.name.lower()})"
        xs.extend([*epochs, None])
        ys.extend([*curve, None])
        texts.extend([name] * len(curve) + [""])
        if trial.state == TrialState.PRUNED:
            pruned_x.append(epochs[-1])
            pruned_y.append(curve[-1])
            pruned_text.append(f"trial {trial.number} pruned after epoch {epochs[-1]}")
    for state, (xs, ys, texts) in lines.items():
        colour, dash = STATE_STYLE[state]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=state.name.lower(),
                line={"color": colour, "dash": dash, "width": 1.5},
                opacity=0.75,
                text=texts,
                connectgaps=False,
                hovertemplate="%{text}<br>epoch %{x}<br>val loss %{y:.4f}<extra></extra>",
            )
        )
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


VERDICT_COLOUR = {
    "helps": "#2e7d32",
    "hurts": "#c62828",
    "negligible": "#1565c0",
    "real but negligible": "#1565c0",
    "undecided": "#757575",
}


@dataclass(frozen=True)
class EffectBar:
    """One row of the effect plot: a paired difference and its interval."""

    label: str
    mean: float
    low: float | None
    high: float | None
    verdict: str


def effect_plot(
    rows: list[EffectBar], metric_label: str, runs: int, min_effect: float = 0.0
) -> go.Figure:
    """Differences with their interval's whiskers around a zero line (and the smallest
    effect that matters, dotted): not bars from zero, so an effect of a few percent is as
    visible as it is."""
    fig = go.Figure()
    labels = [r.label for r in rows]
    fig.add_trace(
        go.Scatter(
            x=[r.mean for r in rows],
            y=labels,
            mode="markers",
            name=f"{metric_label}: without − with ({runs} repetitions)",
            marker={"size": 13, "color": [VERDICT_COLOUR.get(r.verdict, "#333") for r in rows]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [(r.high - r.mean) if r.high is not None else 0 for r in rows],
                "arrayminus": [(r.mean - r.low) if r.low is not None else 0 for r in rows],
                "thickness": 2,
                "width": 8,
            },
            text=[r.verdict for r in rows],
            hovertemplate="%{y}: %{x:+.4f} (%{text})<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_color="#333", line_width=1.5)
    for bound in (-min_effect, min_effect) if min_effect > 0 else ():
        fig.add_vline(x=bound, line_color="#1565c0", line_width=1, line_dash="dot")
    fig.update_yaxes(autorange="reversed", title="")
    fig.update_xaxes(
        title=f"{metric_label} without it − with it (right of 0: it helps; left: it hurts)",
        zeroline=False,
    )
    return style(
        fig,
        f"Effect of each regularizer on {metric_label} (adjusted 95% CI)",
        height=max(300, 70 + 48 * len(rows)),
    )


@dataclass(frozen=True)
class PathPoint:
    label: str
    is_best: bool
    effect: float | None
    low: float | None
    high: float | None
    gap: float | None
    gap_low: float | None
    gap_high: float | None


def dose_response(name: str, points: list[PathPoint], metric_label: str, runs: int) -> go.Figure:
    """One regularizer's path: effect on the loss (top) and the gap (bottom) per strength."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[
            f"{metric_label} − the best config's (paired, 95% CI band)",
            "generalization gap: assessment − train loss (95% CI band)",
        ],
    )
    x = [p.label for p in points]
    for row, mean, low, high, colour in (
        (1, [p.effect for p in points], [p.low for p in points], [p.high for p in points],
         "#3182bd"),
        (2, [p.gap for p in points], [p.gap_low for p in points], [p.gap_high for p in points],
         "#e6550d"),
    ):  # fmt: skip
        band_low = [lo if lo is not None else m for lo, m in zip(low, mean, strict=True)]
        band_high = [hi if hi is not None else m for hi, m in zip(high, mean, strict=True)]
        fig.add_trace(
            go.Scatter(x=x, y=band_high, mode="lines", line={"width": 0}, showlegend=False,
                       hoverinfo="skip"),
            row=row, col=1,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x,
                y=band_low,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=_rgba(colour, 0.2),
                name="95% CI",
                showlegend=row == 1,
                hoverinfo="skip",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers",
                line={"color": colour},
                name=f"{metric_label} difference" if row == 1 else "gap",
                hovertemplate="%{x}: %{y:+.4f}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        best = [(p.label, m) for p, m in zip(points, mean, strict=True) if p.is_best]
        fig.add_trace(
            go.Scatter(
                x=[b[0] for b in best],
                y=[b[1] for b in best],
                mode="markers",
                marker={"symbol": "star", "size": 16, "color": "#2ca02c"},
                name="best config's value",
                showlegend=row == 1,
            ),
            row=row,
            col=1,
        )
    fig.add_hline(y=0, line_color="#333", line_width=1, row=1, col=1)
    fig.update_xaxes(title=f"{name} (off = regularizer off)", type="category", row=2, col=1)
    style(fig, f"Dose-response: {name} ({runs} repetitions per point)", height=560)
    fig.update_layout(margin={"t": 90})
    return fig


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"
