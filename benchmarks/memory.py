"""Peak resident memory of a worker: solo trials vs packs of 8 and 16.

python benchmarks/memory.py [--epochs 2]

Each case is a fresh ``regsweep launch`` process (the real CLI) running sweeps/mnist.yaml's
network on the real MNIST test set (8,000 / 2,000) for as many trials as its pack holds;
the process reports its own peak RSS (``ru_maxrss``) when it ends. The full MNIST
training set (60,000 images as float32, 188 MB) would add that much to every case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib

CHILD = """
import json, resource, sys
sys.path.insert(0, {bench!r})
import benchlib
config = benchlib.t10k_sweep("memory", {url!r}, study__pruner={{"name": "none"}},
    study__n_trials={trials}, study__pack={pack}, train__max_epochs={epochs})
benchlib.quiet_launch(config)
print(json.dumps({{"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
PACKS = (1, 8, 16)
# The same process without any data or training: the floor every worker pays.
RUNTIME = """
import json, resource
import optuna, torch, regsweep.sweep.launch, regsweep.sweep.packed
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child_peak(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mib"])


def peak(pack: int, epochs: int, folder: Path) -> float:
    code = CHILD.format(
        bench=str(Path(__file__).parent),
        url=f"sqlite:///{folder / f'memory-{pack}.db'}",
        trials=max(pack, 2),
        pack=pack,
        epochs=epochs,
    )
    return child_peak(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        peaks = {pack: peak(pack, args.epochs, Path(folder)) for pack in PACKS}
    runtime = child_peak(RUNTIME)
    rows = [["imports only", "0", f"{runtime:.0f}", f"{runtime - peaks[1]:+.0f}"]]
    rows += [
        [str(pack), str(max(pack, 2)), f"{mib:.0f}", f"{mib - peaks[1]:+.0f}"]
        for pack, mib in peaks.items()
    ]
    body = (
        f"Peak RSS of one `regsweep launch` worker process, {args.epochs} epochs per trial, "
        "batch 128, real MNIST test set 8,000 / 2,000. Most of it is the runtime (this "
        "PyTorch build maps its CUDA libraries even without a GPU); the stacked weights "
        "and optimizer state of 16 members are about 35 MiB, within the allocator's "
        "run-to-run spread.\n\n"
        + benchlib.table(["pack", "trials", "peak RSS MiB", "vs solo MiB"], rows)
    )
    benchlib.write_section(
        "memory",
        "Memory: peak RSS of a worker, solo and packed",
        f"python benchmarks/memory.py --epochs {args.epochs}",
        body,
    )


if __name__ == "__main__":
    main()
