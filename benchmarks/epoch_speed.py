"""Seconds per epoch: the trial engine vs a bare in-memory loop vs a tutorial DataLoader loop.

python benchmarks/epoch_speed.py [--repeats 5] [--threads 1]

One epoch = one training pass over 48,000 images plus evaluation of 12,000, the MNIST
split (the 10,000 real test images repeated), with the seed network 784-128-64-10
(dropout 0.2, Adam, lr 1e-3) in all three loops:
- engine: regsweep's ``fit`` for one epoch (what every trial runs);
- bare: the floor, a hand-written loop over in-memory tensors, no bookkeeping at all;
- tutorial: torchvision's MNIST Dataset + ToTensor + DataLoader(shuffle=True), as in
  Optuna's PyTorch example.
Goal at batch 128 on CPU: engine within 1.2x of bare, and at least 3x faster than tutorial.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import benchlib
import numpy as np
import torch
import torch.nn.functional as F

from regsweep.config.regularization import Regularization
from regsweep.config.schema import TrainConfig
from regsweep.data.idx import write_idx
from regsweep.data.splits import Splits
from regsweep.engine.fit import fit
from regsweep.engine.model import build_mlp

N_TRAIN, N_VAL = 48_000, 12_000
BATCH_SIZES = (32, 128, 512)
DROPOUT, LR = 0.2, 1e-3


def seed_network() -> torch.nn.Module:
    return build_mlp(784, [128, 64], 10, dropout=DROPOUT)


def engine_epoch(splits: Splits, batch_size: int) -> None:
    torch.manual_seed(0)
    train = TrainConfig(max_epochs=1, batch_size=batch_size, device="cpu")
    fit(seed_network(), splits, train, Regularization(dropout=DROPOUT), seed=0)


def bare_epoch(splits: Splits, batch_size: int) -> None:
    torch.manual_seed(0)
    model = seed_network()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = splits.train_x, splits.train_y
    order = torch.randperm(len(x))
    model.train()
    for start in range(0, len(x), batch_size):
        index = order[start : start + batch_size]
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode():
        float(F.cross_entropy(model(splits.val_x), splits.val_y))


def tutorial_epoch(train_set: object, val_set: object, batch_size: int) -> None:
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = seed_network()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for data, target in DataLoader(train_set, batch_size=batch_size, shuffle=True):  # type: ignore[arg-type]
        data = data.view(data.size(0), -1)
        optimizer.zero_grad()
        F.cross_entropy(model(data), target).backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in DataLoader(val_set, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
            correct += int((model(data.view(data.size(0), -1)).argmax(1) == target).sum())


def torchvision_sets(images: np.ndarray, labels: np.ndarray, root: Path) -> tuple[object, object]:
    """torchvision's own MNIST class over the same 60,000 images (written as its raw files)."""
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:10])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:10])
    full = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    return Subset(full, range(N_TRAIN)), Subset(full, range(N_TRAIN, N_TRAIN + N_VAL))


def in_memory(images: np.ndarray, labels: np.ndarray) -> Splits:
    """The engine's form of the data: standardized float tensors, loaded once."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    x = (x - x[:N_TRAIN].mean()) / x[:N_TRAIN].std()
    tx, ty = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    return Splits(tx[:N_TRAIN], ty[:N_TRAIN], tx[N_TRAIN:], ty[N_TRAIN:], None, None, 10, "mnist")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = benchlib.repeated(N_TRAIN + N_VAL)
    splits = in_memory(images, labels)
    with tempfile.TemporaryDirectory() as root:
        train_set, val_set = torchvision_sets(images, labels, Path(root))
        cases = {}
        for b in BATCH_SIZES:
            cases[f"engine {b}"] = lambda b=b: engine_epoch(splits, b)
            cases[f"bare {b}"] = lambda b=b: bare_epoch(splits, b)
            cases[f"tutorial {b}"] = lambda b=b: tutorial_epoch(train_set, val_set, b)
        started = time.perf_counter()
        times = benchlib.interleaved(cases, args.repeats)  # type: ignore[arg-type]
        total = time.perf_counter() - started

    rows = []
    for b in BATCH_SIZES:
        engine, bare, tutorial = (
            benchlib.median(times[f"{k} {b}"]) for k in ("engine", "bare", "tutorial")
        )
        rows.append(
            [
                str(b),
                f"{engine:.2f}",
                f"{bare:.2f}",
                f"{tutorial:.2f}",
                f"{engine / bare:.2f}x",
                f"{tutorial / engine:.1f}x",
            ]
        )
    b128 = BATCH_SIZES.index(128)
    engine_vs_bare = float(rows[b128][4].rstrip("x"))
    speedup = float(rows[b128][5].rstrip("x"))
    verdict = (
        f"Goal at batch 128: engine <= 1.2x bare (measured {engine_vs_bare:.2f}x: "
        f"{'met' if engine_vs_bare <= 1.2 else 'NOT met'}) and >= 3x faster than tutorial "
        f"(measured {speedup:.1f}x: {'met' if speedup >= 3 else 'NOT met'})."
    )
    body = (
        f"One epoch: train on {N_TRAIN:,} images + evaluate {N_VAL:,} (real MNIST test images "
        f"repeated), 784-128-64-10 with dropout {DROPOUT}, Adam; {args.threads} PyTorch "
        f"thread(s); median of {args.repeats} interleaved runs, seconds per epoch "
        f"(whole run {total:.0f} s).\n\n"
        + benchlib.table(
            ["batch", "engine s", "bare s", "tutorial s", "engine / bare", "tutorial / engine"],
            rows,
        )
        + f"\n\n{verdict}"
    )
    benchlib.write_section(
        "epoch_speed",
        "Epoch speed: engine vs bare loop vs tutorial DataLoader loop",
        f"python benchmarks/epoch_speed.py --repeats {args.repeats} --threads {args.threads}",
        body,
    )


if __name__ == "__main__":
    main()
