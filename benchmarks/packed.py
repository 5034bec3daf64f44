"""Trials per hour with packed trials: pack 1 (the solo engine) vs packs of 4, 8 and 16.

python benchmarks/packed.py [--repeats 3] [--threads 1] [--train-images 24000]

Each member gets its own regularizers, drawn from sweeps/mnist.yaml's search space (so
packs mix dropout rates, batch norm on and off, L1 and weight decay), trained on the
real MNIST test images (repeated). A trial is ``max_epochs`` = 20 epochs here, so
trials/hour = 3600 / (seconds per epoch per trial x 20); pack 1 is the solo engine
(``fit``), pack K one epoch of a K-member ``Pack``. Goal on a 2-core CPU: pack 8 at batch
128 gives >= 1.4x the trials/hour of pack 1, and more at batch 32.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import benchlib
import numpy as np
import torch

from regsweep.config import SweepConfig
from regsweep.data import Splits
from regsweep.objective import build_model
from regsweep.pack import Pack
from regsweep.regularization import Regularization
from regsweep.train import fit

PACKS = (1, 4, 8, 16)
BATCH_SIZES = (32, 128)
EPOCHS_PER_TRIAL = 20


def random_regs(n: int, seed: int) -> list[Regularization]:
    """Regularizers as sweeps/mnist.yaml's search space draws them."""
    rng = np.random.default_rng(seed)

    def log_uniform(low: float, high: float) -> float:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    return [
        Regularization(
            dropout=float(rng.uniform(0.0, 0.5)),
            weight_decay=log_uniform(1e-7, 1e-3),
            l1=log_uniform(1e-8, 1e-4),
            batch_norm=bool(rng.integers(2)),
        )
        for _ in range(n)
    ]


def in_memory(n_train: int) -> Splits:
    images, labels = benchlib.repeated(n_train + n_train // 4)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    x = (x - x[:n_train].mean()) / x[:n_train].std()
    tx, ty = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    return Splits(tx[:n_train], ty[:n_train], tx[n_train:], ty[n_train:], None, None, 10, "mnist")


def epoch_case(config: SweepConfig, splits: Splits, pack: int) -> Callable[[], float]:
    """One epoch of ``pack`` trials (solo ``fit`` for pack 1); returns seconds per trial."""
    regs = random_regs(pack, seed=pack)

    def solo() -> float:
        torch.manual_seed(0)
        model = build_model(config, splits, regs[0])
        started = time.perf_counter()
        fit(model, splits, config.train, regs[0], seed=0)
        return time.perf_counter() - started

    def packed() -> float:
        p = Pack(config, splits, shuffle_seed=0)
        for i, reg in enumerate(regs):
            p.admit(i, reg, seed=i)
        started = time.perf_counter()
        p.run_epoch()
        return (time.perf_counter() - started) / pack

    return solo if pack == 1 else packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=24_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = in_memory(args.train_images)
    cases: dict[str, Callable[[], float | None]] = {}
    for b in BATCH_SIZES:
        config = SweepConfig.model_validate(
            {"train": {"batch_size": b, "max_epochs": 1, "device": "cpu"}}
        )
        for k in PACKS:
            cases[f"{b} {k}"] = epoch_case(config, splits, k)
    benchlib.interleaved(cases, 1)  # warm-up: first calls pay for allocations
    started = time.perf_counter()
    times = benchlib.interleaved(cases, args.repeats)
    total = time.perf_counter() - started

    rows, ratio = [], {}
    for b in BATCH_SIZES:
        base = benchlib.median(times[f"{b} 1"])
        for k in PACKS:
            per_trial_epoch = benchlib.median(times[f"{b} {k}"])
            per_hour = 3600 / (per_trial_epoch * EPOCHS_PER_TRIAL)
            ratio[(b, k)] = base / per_trial_epoch
            rows.append(
                [
                    str(b),
                    str(k),
                    f"{per_trial_epoch:.3f}",
                    f"{per_hour:,.0f}",
                    f"{ratio[(b, k)]:.2f}x",
                ]
            )
    goal = ratio[(128, 8)]
    body = (
        f"Epoch = {len(splits.train_x):,} training + {len(splits.val_x):,} validation images "
        f"(real MNIST test images repeated); 784-128-64-10, Adam; {args.threads} PyTorch "
        f"thread(s); trial = {EPOCHS_PER_TRIAL} epochs; median of {args.repeats} interleaved "
        f"runs after a warm-up (whole run {total:.0f} s).\n\n"
        + benchlib.table(["batch", "pack", "s / epoch / trial", "trials / hour", "vs pack 1"], rows)
        + f"\n\nGoal: pack 8 at batch 128 >= 1.4x pack 1: measured {goal:.2f}x "
        f"({'met' if goal >= 1.4 else 'NOT met'}); at batch 32: {ratio[(32, 8)]:.2f}x "
        f"({'more' if ratio[(32, 8)] > goal else 'not more'} than at 128)."
    )
    threads = "" if args.threads == 1 else f" ({args.threads} threads)"
    benchlib.write_section(
        "packed" if args.threads == 1 else f"packed-{args.threads}-threads",
        f"Packed trials: trials per hour by pack size{threads}",
        f"python benchmarks/packed.py --repeats {args.repeats} --threads {args.threads} "
        f"--train-images {args.train_images}",
        body,
    )


if __name__ == "__main__":
    main()
