"""Verdict calibration: do ablate's intervals and decisions hold on new data?

python benchmarks/verdict_calibration.py [--datasets 20] [--rows 800] [--trials 20]

Synthetic tasks (a classification and a regression source: a fixed random teacher
network on 12 Gaussian features, 6 of them informative, with label noise) where new data
can always be had. For each of ``--datasets`` data sets of ``--rows`` rows drawn from a
source (a fifth held out as the user's test split): a sweep (``--trials`` trials, TPE and
Hyperband, breast_cancer.yaml's network and search space), then the best config's
effects by

- **today's design** (before this version): ``--seeds`` paired seeds on the sweep's own
  split, scored on the validation rows that chose the config, plain paired t at 95%;
- **the new design**: ``ablate`` as shipped (repetitions on fresh fit / validation /
  assessment rows until decided, at most 30; corrected resampled t; Holm; alpha spending;
  smallest effect 5% of the best trial's loss).

The ground truth of each effect is what the best config's recipe does on new data: the
variant and the best config trained (paired, one pack) on ``--truth-sets`` fresh training
sets from the source, each as large as a repetition's training rows (fit + validation)
and split like one, scored on ``--fresh`` fresh rows; the truth is the mean difference.
Reported per design: the coverage of its 95% intervals, the share of its *helps* / *hurts*
claims (and *negligible* claims) that the truth contradicts, and the share decided.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import optuna
import pandas as pd
import torch

from regsweep.config.loading import load_sweep
from regsweep.config.schema import SweepConfig
from regsweep.data.preprocess import table_preprocessor
from regsweep.data.resample import Partition, holdout
from regsweep.data.sources import RawData
from regsweep.data.splits import build_splits, load_splits
from regsweep.insight.ablation import (
    ALL,
    findings_to_test,
    run_ablation,
    variant_key,
    variants,
)
from regsweep.insight.effects import Effect, paired_effect
from regsweep.insight.retrain import pack_runs
from regsweep.insight.studyview import effective

FEATURES = 12
INFORMATIVE = 6
OLD_SALT = 0xAB1A7E  # the seeds today's ablate drew: SeedSequence([study seed, salt, i])


@dataclass(frozen=True)
class Source:
    """A fixed random teacher network: the distribution every data set is drawn from."""

    task: str
    seed: int

    def draw(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        teacher = np.random.default_rng(self.seed)
        w1 = teacher.normal(0, 1.2, (INFORMATIVE, 16))
        b1 = teacher.normal(0, 0.5, 16)
        w2 = teacher.normal(0, 1.0, 16)
        x = rng.standard_normal((n, FEATURES))
        x[:, INFORMATIVE] = x[:, 0] + 0.3 * x[:, INFORMATIVE]  # one correlated copy
        signal = np.tanh(x[:, :INFORMATIVE] @ w1 + b1) @ w2 / np.sqrt(16) * 2.5
        if self.task == "classification":
            label = rng.random(n) < 1 / (1 + np.exp(-signal))
            target: np.ndarray = np.where(label, "yes", "no")
        else:
            target = signal + rng.normal(0, 0.6, n)
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(FEATURES)])
        frame["target"] = target
        return frame


def sweep_config(path: Path, storage: str, task: str, seed: int, trials: int) -> SweepConfig:
    flags = {
        "study.name": f"calibration-{task}-{seed}",
        "study.storage": storage,
        "study.seed": seed,
        "study.n_trials": trials,
        "data.path": str(path),
        "data.target": "target",
        "data.task": task,
        "train.device": "cpu",
        "train.threads": 1,
    }
    return load_sweep(benchlib.REPO / "sweeps/breast_cancer.yaml", flags=flags)


def unique_jobs(best: dict[str, Any], max_epochs: int) -> tuple[list[tuple[str, Any]], dict]:
    unique: dict[tuple[Any, ...], Any] = {}
    for v in variants(best, max_epochs):
        unique.setdefault(effective(v.params, max_epochs), v)
    same_as = {
        v.key: unique[effective(v.params, max_epochs)].key
        for v in variants(best, max_epochs)
        if unique[effective(v.params, max_epochs)].key != v.key
    }
    return [(v.key, v.params) for v in unique.values()], same_as


def old_design(config: SweepConfig, jobs: list, same_as: dict, n_seeds: int) -> dict[str, Any]:
    """Today's ablate: seeds on the sweep's split, scored on its validation rows."""
    splits = load_splits(config.data, config.study.seed, "cpu")
    seeds = [
        int(np.random.SeedSequence([config.study.seed, OLD_SALT, i]).generate_state(1)[0])
        for i in range(n_seeds)
    ]
    runs = [pack_runs(config, splits, jobs, seed) for seed in seeds]
    out = {}
    for name in findings_to_test(same_as):
        key = same_as.get(variant_key(name), variant_key(name))
        effect = paired_effect(
            [r[key].get("val_loss") for r in runs], [r["best"].get("val_loss") for r in runs]
        )
        out[name] = (effect, _old_decision(effect))
    return out


def _old_decision(effect: Effect) -> str:
    if not effect.excludes_zero() or effect.mean is None:
        return "undecided"
    return "helps" if effect.mean > 0 else "hurts"


def truth(
    config: SweepConfig,
    source: Source,
    jobs: list,
    same_as: dict,
    n_train: int,
    fresh: pd.DataFrame,
    sets: int,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Each effect on new data: mean and standard error over fresh training sets."""
    rng = np.random.default_rng([seed, 99])
    features = [f"x{i}" for i in range(FEATURES)]
    diffs: dict[str, list[float]] = {}
    task = config.data.task or "classification"
    for g in range(sets):
        train = source.draw(n_train, rng)
        raw = RawData(
            train[features],
            train["target"].to_numpy(),
            fresh[features],
            fresh["target"].to_numpy(),
            task,  # type: ignore[arg-type]
            lambda: table_preprocessor(features, []),
            "fresh rows",
            "fresh",
        )
        fit, val = holdout(raw.y, config.data.val_fraction, task, seed * 1000 + g)
        splits = build_splits(raw, Partition(fit, val), "cpu")
        runs = pack_runs(config, splits, jobs, seed * 1000 + g)
        for name in findings_to_test(same_as):
            key = same_as.get(variant_key(name), variant_key(name))
            if runs[key].get("test_loss") is None or runs["best"].get("test_loss") is None:
                continue
            diffs.setdefault(name, []).append(runs[key]["test_loss"] - runs["best"]["test_loss"])
    return {
        name: (statistics.fmean(d), statistics.stdev(d) / np.sqrt(len(d)))
        for name, d in diffs.items()
    }


@dataclass
class Tally:
    intervals: int = 0
    covered: int = 0
    raw_covered: int = 0  # the new design's unadjusted 95% intervals (its table's)
    effects: int = 0
    decided: int = 0
    claims: int = 0  # helps / hurts
    contradicted: int = 0
    negligible: int = 0
    negligible_wrong: int = 0
    seconds: float = 0.0

    def add(self, effect: Effect, decision: str, true: float, min_effect: float) -> None:
        self.effects += 1
        if effect.low is not None and effect.high is not None:
            self.intervals += 1
            self.covered += effect.low <= true <= effect.high
        if decision != "undecided":
            self.decided += 1
        if decision in ("helps", "hurts"):
            self.claims += 1
            self.contradicted += (decision == "helps" and true <= 0) or (
                decision == "hurts" and true >= 0
            )
        if decision == "negligible":
            self.negligible += 1
            self.negligible_wrong += abs(true) >= min_effect


def share(a: int, b: int) -> str:
    return f"{a / b:.0%} ({a}/{b})" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--truth-sets", type=int, default=20)
    parser.add_argument("--fresh", type=int, default=20000)
    parser.add_argument("--tasks", nargs="+", default=["classification", "regression"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    tallies: dict[tuple[str, str], Tally] = {}
    truth_se: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for t, task in enumerate(args.tasks):
            source = Source(task, seed=100 + t)
            fresh = source.draw(args.fresh, np.random.default_rng([t, 7]))
            old, new = Tally(), Tally()
            tallies[task, "old"], tallies[task, "new"] = old, new
            for d in range(args.datasets):
                path = Path(folder) / f"{task}-{d}.csv"
                source.draw(args.rows, np.random.default_rng([t, d])).to_csv(path, index=False)
                config = sweep_config(
                    path, f"sqlite:///{Path(folder) / f'{task}-{d}.db'}", task, d, args.trials
                )
                config = config.model_copy(
                    update={"data": config.data.model_copy(update={"test_fraction": 0.2})}
                )
                study, _ = benchlib.quiet_launch(config)
                assert isinstance(study, optuna.Study)
                best = study.best_trial.params
                jobs, same_as = unique_jobs(best, config.train.max_epochs)
                started = time.perf_counter()
                old_found = old_design(config, jobs, same_as, args.seeds)
                old.seconds += time.perf_counter() - started
                started = time.perf_counter()
                result = run_ablation(study, workers=args.workers)
                new.seconds += time.perf_counter() - started
                run = result["rows"][0]["runs"][0]
                n_train = run["n_fit"] + run["n_val"]
                true = truth(config, source, jobs, same_as, n_train, fresh, args.truth_sets, d)
                m = float(result["min_effect"])
                for name, (effect, decision) in old_found.items():
                    old.add(effect, decision, true[name][0], m)
                rows = {row["key"]: row for row in result["rows"]}
                ratio = result["ratio"]
                for name in result["tested"]:
                    verdict = result["verdicts"][name]
                    effect = Effect.from_dict(verdict["effect"])
                    new.add(effect, verdict["decision"], true[name][0], m)
                    raw = paired_effect(
                        [r.get("assess_loss") for r in rows[variant_key(name)]["runs"]],
                        [r.get("assess_loss") for r in rows["best"]["runs"]],
                        ratio=ratio,
                    )
                    new.raw_covered += bool(
                        raw.low is not None and raw.low <= true[name][0] <= raw.high  # type: ignore[operator]
                    )
                    truth_se.append(true[name][1])
                print(
                    f"{task} {d + 1}/{args.datasets}: stopped {result['stopped']} after "
                    f"{len(result['seeds'])} repetitions; "
                    + ", ".join(
                        f"{'all' if n == ALL else n}: {result['verdicts'][n]['decision']} "
                        f"(truth {true[n][0]:+.4f})"
                        for n in result["tested"]
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    rows_out = []
    for (task, design), tally in tallies.items():
        rows_out.append(
            [
                task,
                "today: seeds on the validation rows" if design == "old" else "new: ablate",
                share(tally.covered, tally.intervals)
                + (
                    f"; unadjusted {share(tally.raw_covered, tally.intervals)}"
                    if design == "new"
                    else ""
                ),
                share(tally.contradicted, tally.claims),
                share(tally.negligible_wrong, tally.negligible) if design == "new" else "-",
                share(tally.decided, tally.effects),
                f"{tally.seconds / args.datasets:.1f}",
            ]
        )
    body = (
        f"{args.datasets} data sets per task of {args.rows} rows (a fifth held out as the "
        f"test split); a {args.trials}-trial sweep each; today's design with {args.seeds} "
        f"paired seeds; truth from {args.truth_sets} fresh training sets per data set scored "
        f"on {args.fresh:,} fresh rows (median standard error of a true effect "
        f"{statistics.median(truth_se):.4f}).\n\n"
        + benchlib.table(
            [
                "task",
                "design",
                "95% intervals covering the truth",
                "helps/hurts claims the truth contradicts",
                "negligible claims the truth contradicts",
                "effects decided",
                "s per verdict",
            ],
            rows_out,
        )
    )
    benchlib.write_section(
        "verdict_calibration",
        "Verdict calibration: intervals and decisions against new data",
        f"python benchmarks/verdict_calibration.py --datasets {args.datasets} --rows "
        f"{args.rows} --trials {args.trials} --seeds {args.seeds} --truth-sets "
        f"{args.truth_sets} --fresh {args.fresh}",
        body,
    )


if __name__ == "__main__":
    main()
