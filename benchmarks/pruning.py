"""Pruning: the same sweep and seed with no pruner, the median pruner and Hyperband.

python benchmarks/pruning.py [--trials 50] [--epochs 30] [--pack 1]

sweeps/mnist.yaml as shipped (50 trials of up to 30 epochs, TPE, its search space,
early stopping by each trial's patience) on the real MNIST test set split 8,000 / 2,000,
with only the pruner changed. Hyperband assigns trials to brackets by a hash of the study
name and trial number, so its result depends on the study name; it runs under
``--names`` names and the goal is judged on their medians. Reported: epochs trained in all, the
best validation loss, and wall time. Goal: Hyperband trains at most 40% of the epochs of
no pruning and reaches a best validation loss within 3% of it. Hyperband with reduction
factor 4 (more aggressive than the shipped 3) runs under the same names, to show what
fewer epochs would cost in loss.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import benchlib
import optuna

PRUNERS = {
    "none": {"name": "none"},
    "median": {"name": "median", "options": {"n_startup_trials": 5, "n_warmup_steps": 2}},
    # sweeps/mnist.yaml's own pruner
    "hyperband": {"name": "hyperband", "options": {"min_resource": 1, "reduction_factor": 3}},
    # The next step down in epochs: keeps a quarter at each rung instead of a third.
    "hyperband rf 4": {"name": "hyperband", "options": {"min_resource": 1, "reduction_factor": 4}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pack", type=int, default=1)
    parser.add_argument("--names", type=int, default=3, help="study names Hyperband runs under")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, pruner in PRUNERS.items():
            hyperband = name.startswith("hyperband")
            for i in range(args.names if hyperband else 1):
                run = f"{name} ({i + 1})" if hyperband else name
                # Both Hyperband variants run under the same names, so the same brackets.
                study_name = f"bench-pruning-{pruner['name']}-{i}"
                config = benchlib.t10k_sweep(
                    study_name,
                    f"sqlite:///{Path(folder) / f'{run}.db'}",
                    study__pruner=pruner,
                    study__n_trials=args.trials,
                    study__pack=args.pack,
                    train__max_epochs=args.epochs,
                )
                study, seconds = benchlib.quiet_launch(config)
                assert isinstance(study, optuna.Study)
                trials = study.get_trials(deepcopy=False)
                epochs = sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials)
                pruned = sum(1 for t in trials if t.state == optuna.trial.TrialState.PRUNED)
                accuracy = study.best_trial.user_attrs["best_val_accuracy"]
                results[run] = (epochs, study.best_value, accuracy, pruned, seconds)
    base_epochs, base_loss = results["none"][0], results["none"][1]
    rows = [
        [
            name,
            f"{epochs:,}",
            f"{epochs / base_epochs:.0%}",
            str(pruned),
            f"{loss:.4f}",
            f"{(loss - base_loss) / base_loss:+.1%}",
            f"{acc:.2%}",
            f"{seconds:.0f}",
        ]
        for name, (epochs, loss, acc, pruned, seconds) in results.items()
    ]

    def medians(prefix: str) -> tuple[float, float]:
        """Epochs as a share of no pruning, and best loss vs no pruning, on the names' medians."""
        runs = [v for k, v in results.items() if k.startswith(f"{prefix} (")]
        epochs = statistics.median(v[0] for v in runs) / base_epochs
        return epochs, (statistics.median(v[1] for v in runs) - base_loss) / base_loss

    hb_epochs, gap = medians("hyperband")
    rf4_epochs, rf4_gap = medians("hyperband rf 4")
    body = (
        f"{args.trials} trials of up to {args.epochs} epochs each, seed 0, pack {args.pack}, "
        "sweeps/mnist.yaml otherwise; real MNIST test set, 8,000 training / 2,000 "
        "validation images.\n\n"
        + benchlib.table(
            [
                "pruner",
                "epochs trained",
                "vs none",
                "pruned trials",
                "best val loss",
                "vs none",
                "its val acc",
                "wall s",
            ],
            rows,
        )
        + f"\n\nGoal, on Hyperband's medians: <= 40% of the epochs ({hb_epochs:.0%}: "
        f"{'met' if hb_epochs <= 0.4 else 'NOT met'}) and best loss within 3% "
        f"({gap:+.1%}: {'met' if gap <= 0.03 else 'NOT met'}). "
        f"Reduction factor 4 instead of the shipped 3: {rf4_epochs:.0%} of the epochs, "
        f"best loss {rf4_gap:+.1%}."
    )
    benchlib.write_section(
        "pruning",
        "Pruning: no pruner vs median vs Hyperband (reduction factor 3 and 4)",
        f"python benchmarks/pruning.py --trials {args.trials} --epochs {args.epochs} "
        f"--pack {args.pack} --names {args.names}",
        body,
    )


if __name__ == "__main__":
    main()
