"""Trials per hour with packed trials: pack 1 (the solo engine) vs packs of 4, 8 and 16.

python benchmarks/packed.py [--repeats 3] [--threads 1] [--train-images 24000]

Each member gets its own regularizers, drawn from sweeps/mnist.yaml's search space (so
packs mix dropout rates, batch norm on and off, L1 and weight decay), trained on the
real MNIST test images (repeated). A trial is ``max_epochs`` = 20 epochs here, so
trials/hour = 3600 / (seconds per epoch per trial x 20): training only, since the
storage's share is measured by orchestration.py and whole sweeps by quality.py. Pack K
trains the first K of one list of 16 drawn configs, as one ``Pack``; pack 1 is the solo
engine (``fit``) training each of the first 8 in turn (the members of pack 8, so the
goal compares the same work: batch norm, for one, makes an epoch about 10% dearer).
Goal on a 2-core CPU: pack 8 at batch 128 gives >= 1.4x the trials/hour of pack 1, and
more at batch 32.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import benchlib
import numpy as np
import torch

from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.splits import Splits
from regsweep.engine.fit import fit
from regsweep.engine.pack import Pack
from regsweep.engine.recipe import build_model

PACKS = (1, 4, 8, 16)
SOLO_BASELINE = 8  # pack 1 is measured on the members of pack 8
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


CPU: dict[str, list[float]] = {}


def epoch_case(config: SweepConfig, splits: Splits, pack: int, key: str) -> Callable[[], float]:
    """One epoch of ``pack`` trials (solo ``fit`` for pack 1); returns wall seconds per trial.

    The process's CPU seconds per trial go to ``CPU[key]``: on a machine shared with
    other users, wall time also counts the time this process waited for a core.
    """
    regs = random_regs(max(PACKS), seed=0)[: SOLO_BASELINE if pack == 1 else pack]
    CPU[key] = []

    def solo() -> tuple[float, float]:
        wall = cpu = 0.0
        for i, reg in enumerate(regs):
            torch.manual_seed(i)
            model = build_model(config, splits, reg)
            wall_0, cpu_0 = time.perf_counter(), time.process_time()
            fit(model, splits, config.train, reg, seed=i)
            wall += time.perf_counter() - wall_0
            cpu += time.process_time() - cpu_0
        return wall / len(regs), cpu / len(regs)

    def packed() -> tuple[float, float]:
        p = Pack(config, splits, shuffle_seed=0)
        for i, reg in enumerate(regs):
            p.admit(i, reg, seed=i)
        wall, cpu = time.perf_counter(), time.process_time()
        p.run_epoch()
        return (time.perf_counter() - wall) / pack, (time.process_time() - cpu) / pack

    def case() -> float:
        wall, cpu = solo() if pack == 1 else packed()
        CPU[key].append(cpu)
        return wall

    return case


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
            cases[f"{b} {k}"] = epoch_case(config, splits, k, f"{b} {k}")
    benchlib.interleaved(cases, 1)  # warm-up: first calls pay for allocations
    for values in CPU.values():
        values.clear()
    started = time.perf_counter()
    times = benchlib.interleaved(cases, args.repeats)
    total = time.perf_counter() - started

    rows, ratio, cpu_ratio = [], {}, {}
    for b in BATCH_SIZES:
        base = benchlib.median(times[f"{b} 1"])
        cpu_base = benchlib.median(CPU[f"{b} 1"])
        for k in PACKS:
            per_trial_epoch = benchlib.median(times[f"{b} {k}"])
            cpu = benchlib.median(CPU[f"{b} {k}"])
            per_hour = 3600 / (per_trial_epoch * EPOCHS_PER_TRIAL)
            ratio[(b, k)] = base / per_trial_epoch
            cpu_ratio[(b, k)] = cpu_base / cpu
            rows.append(
                [
                    str(b),
                    str(k),
                    f"{per_trial_epoch:.3f}",
                    f"{per_hour:,.0f}",
                    f"{ratio[(b, k)]:.2f}x",
                    f"{cpu:.3f}",
                    f"{cpu_ratio[(b, k)]:.2f}x",
                ]
            )
    goal, cpu_goal = ratio[(128, 8)], cpu_ratio[(128, 8)]
    body = (
        f"Epoch = {len(splits.train_x):,} training + {len(splits.val_x):,} validation images "
        f"(real MNIST test images repeated); 784-128-64-10, Adam; {args.threads} PyTorch "
        f"thread(s); trial = {EPOCHS_PER_TRIAL} epochs; median of {args.repeats} interleaved "
        f"runs after a warm-up (whole run {total:.0f} s). Pack K trains the first K of 16 "
        f"drawn configs; pack 1 trains the {SOLO_BASELINE} members of pack 8 one after "
        "another (mean per trial). Trials/hour counts training only (ask, reports and tell: "
        "see orchestration). Wall: elapsed time; CPU: this process's CPU time, which is "
        "what a trial costs when the machine is not shared.\n\n"
        + benchlib.table(
            [
                "batch",
                "pack",
                "wall s / epoch / trial",
                "trials / hour",
                "vs pack 1",
                "CPU s / epoch / trial",
                "CPU vs pack 1",
            ],
            rows,
        )
        + f"\n\nGoal: pack 8 at batch 128 >= 1.4x pack 1: measured {goal:.2f}x wall, "
        f"{cpu_goal:.2f}x CPU ({'met' if max(goal, cpu_goal) >= 1.4 else 'NOT met'}); "
        f"at batch 32: {ratio[(32, 8)]:.2f}x wall, {cpu_ratio[(32, 8)]:.2f}x CPU."
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
