"""Ablation wall time: one pack per repetition vs one model at a time, on the same work.

python benchmarks/ablation.py [--repetitions 3] [--epochs 10] [--rounds 2]

The ablation of one best config (dropout 0.2, weight decay 1e-4, L1 1e-6, batch norm on,
patience 4; sweeps/mnist.yaml's network and training otherwise) on the real MNIST test
set (10,000 images): its 7 variants x ``--repetitions`` repetitions (each its own
fit, validation and assessment rows), trained by ``insight.retrain.run_retrains`` with
``engine="packed"`` (each repetition's 7 variants as one pack) and ``engine="solo"``
(``engine.fit``, one model at a time), in one process on one thread, interleaved over
``--rounds``. Both give the same numbers (tests/insight/test_insight_units.py).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import benchlib
import torch

BEST = {"dropout": 0.2, "weight_decay": 1e-4, "l1": 1e-6, "batch_norm": True, "patience": 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from regsweep.insight.ablation import variants
    from regsweep.insight.retrain import Engine, run_retrains
    from regsweep.insight.studyview import effective

    with tempfile.TemporaryDirectory() as folder:
        config = benchlib.t10k_sweep(
            "ablation", f"sqlite:///{Path(folder) / 'a.db'}", train__max_epochs=args.epochs
        )
        unique = {}
        for v in variants(BEST, args.epochs):
            unique.setdefault(effective(v.params, args.epochs), (v.key, v.params))
        jobs = list(unique.values())
        epochs: dict[str, int] = {}
        rows: dict[str, int] = {}

        def case(engine: Engine) -> Callable[[], None]:
            def run() -> None:
                runs = run_retrains(config, jobs, range(args.repetitions), workers=1, engine=engine)
                epochs[engine] = sum(r["epochs_run"] for found in runs.values() for r in found)
                first = next(iter(runs.values()))[0]
                rows.update({k: first[f"n_{k}"] for k in ("assess", "fit", "val")})

            return run

        times = benchlib.interleaved({"packed": case("packed"), "solo": case("solo")}, args.rounds)
    packed, solo = benchlib.median(times["packed"]), benchlib.median(times["solo"])
    body = (
        f"{len(jobs)} variants x {args.repetitions} repetitions, up to {args.epochs} epochs, "
        f"batch 128, one thread, one process; real MNIST test set, 10,000 images (each "
        f"repetition: {rows['assess']:,} assessed, {rows['fit']:,} fit, {rows['val']:,} "
        f"validation); medians of "
        f"{args.rounds} interleaved rounds.\n\n"
        + benchlib.table(
            ["engine", "wall s", "epochs trained", "vs solo"],
            [
                [
                    "one pack per repetition",
                    f"{packed:.1f}",
                    str(epochs["packed"]),
                    f"{solo / packed:.2f}x faster",
                ],
                ["one model at a time", f"{solo:.1f}", str(epochs["solo"]), "1.00x"],
            ],
        )
    )
    benchlib.write_section(
        "ablation",
        "Ablation: one pack per repetition vs one model at a time",
        f"python benchmarks/ablation.py --repetitions {args.repetitions} --epochs {args.epochs} "
        f"--rounds {args.rounds}",
        body,
    )


if __name__ == "__main__":
    main()
