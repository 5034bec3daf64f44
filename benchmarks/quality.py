"""Quality: what a default-budget sweep reaches on the real MNIST test set, and how fast.

python benchmarks/quality.py [--packs 1 8]

sweeps/mnist.yaml as shipped (50 trials, up to 30 epochs, TPE + Hyperband, the seed
network 784-128-64-10 with Adam) on the real MNIST test set split 8,000 training / 2,000
validation, next to the untuned baseline: the same network and training with dropout 0,
no weight decay, no L1, no batch norm and no early stopping, for 30 epochs; and the
seed experiment's model with dropout 0.2 at batch 32.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import benchlib
import optuna
import torch

from regsweep.config.regularization import Regularization
from regsweep.data.splits import load_splits
from regsweep.engine.recipe import train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as folder:
        for pack in args.packs:
            # A fixed study name: Hyperband's brackets depend on it, so reruns match.
            config = benchlib.t10k_sweep(
                f"bench-quality-pack-{pack}",
                f"sqlite:///{Path(folder) / f'quality-{pack}.db'}",
                study__pack=pack,
            )
            if not rows:
                splits = load_splits(config.data, config.study.seed, "cpu")
                started = time.perf_counter()
                _, baseline = train_config(config, splits, Regularization(), seed=0)
                baseline_s = time.perf_counter() - started
                last = baseline.history[-1]
                # The seed experiment's model with dropout: 0.2 after each hidden layer,
                # batch 32, nothing else; measured here, on the same split.
                seed_config = config.model_copy(
                    update={"train": config.train.model_copy(update={"batch_size": 32})}
                )
                started = time.perf_counter()
                _, seed_run = train_config(seed_config, splits, Regularization(dropout=0.2), seed=0)
                seed_s = time.perf_counter() - started
                rows.append(
                    [
                        "seed experiment: dropout 0.2, batch 32 (30 epochs)",
                        f"{seed_run.best_val_loss:.4f} (epoch {seed_run.best_epoch})",
                        f"{seed_run.best_val_accuracy:.2%}",
                        f"{seed_s:.0f} s, {seed_run.epochs_run} epochs",
                        "dropout 0.2",
                    ]
                )
                rows.append(
                    [
                        "untuned baseline (30 epochs)",
                        f"{baseline.best_val_loss:.4f} (epoch {baseline.best_epoch}); "
                        f"last {last.val_loss:.4f}",
                        f"{baseline.best_val_accuracy:.2%}; last {last.val_accuracy:.2%}",
                        f"{baseline_s:.0f} s, {baseline.epochs_run} epochs",
                        "-",
                    ]
                )
            study, sweep_s = benchlib.quiet_launch(config)
            assert isinstance(study, optuna.Study)
            trials = study.get_trials(deepcopy=False)
            best = study.best_trial
            epochs = sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials)
            params = ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in best.params.items()
            )
            rows.append(
                [
                    f"default sweep, pack {pack} ({len(trials)} trials)",
                    f"{best.value:.4f} (trial {best.number}, epoch "
                    f"{best.user_attrs['best_epoch']})",
                    f"{best.user_attrs['best_val_accuracy']:.2%}",
                    f"{sweep_s:.0f} s, {epochs} epochs in all",
                    params,
                ]
            )
    body = (
        "sweeps/mnist.yaml as shipped, on the real MNIST test set split 8,000 training / "
        "2,000 validation (so accuracies are below full-MNIST figures); one PyTorch thread. "
        "The baseline is the same network with every regularizer off, for the full 30 "
        "epochs; the seed experiment row is the same network with dropout 0.2 at batch 32, "
        "as in the seed study. Validation loss is the sweep's objective; a trial's weights "
        "are those of its best epoch. A packed sweep explores differently (members of a "
        "pack are sampled before any of them reports), so its best trial differs from "
        "the solo sweep's.\n\n"
        + benchlib.table(["run", "best val loss", "val accuracy", "time", "best params"], rows)
    )
    benchlib.write_section(
        "quality",
        "Quality: default-budget sweep vs untuned baseline",
        f"python benchmarks/quality.py --packs {' '.join(map(str, args.packs))}",
        body,
    )


if __name__ == "__main__":
    main()
