"""Tabular: regsweep's default sweep against the untuned MLP and gradient boosting.

python benchmarks/tabular.py [--seeds 3] [--trials 20]

Real tables available offline, each read through ``dataset: table`` as a user's CSV
would be: breast cancer, wine and diabetes (CSV copies of scikit-learn's bundled data in
sweeps/data) and the Palmer penguins (the CSV the ``palmerpenguins`` package ships:
categorical columns and missing values). Each has one fixed, stratified 20% test split
(regsweep's ``test_fraction``, seed 0); each seed is one study seed (its validation
split, sampler and trials). On the same rows:

- tuned MLP: sweeps/breast_cancer.yaml's search space and training (TPE + Hyperband over
  dropout, weight decay, L1, batch norm, patience), ``--trials`` trials, then the best
  trial retrained on train + validation for its best epoch count (``export --full``) and
  tested once;
- untuned MLP: the same network and training with no regularization, on train +
  validation, for max_epochs;
- HistGradientBoostingClassifier / Regressor with scikit-learn's defaults (categorical
  columns as pandas categories, missing values left to it), on train + validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import optuna
import torch

from regsweep.config.loading import load_sweep
from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.resample import holdout
from regsweep.data.sources import TEST_SPLIT_SEED
from regsweep.data.splits import load_splits
from regsweep.data.tables import read_table
from regsweep.engine.fit import evaluate
from regsweep.engine.recipe import train_config
from regsweep.insight.export import export_best

DATA = benchlib.REPO / "sweeps" / "data"


def tables() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "breast cancer", "path": DATA / "breast_cancer.csv", "target": "diagnosis"},
        {"name": "wine", "path": DATA / "wine.csv", "target": "cultivar"},
        {
            "name": "diabetes",
            "path": DATA / "diabetes.csv",
            "target": "progression",
            "task": "regression",
            "categorical": ["sex"],
        },
    ]
    try:
        import palmerpenguins

        penguins = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
        out.append({"name": "penguins", "path": penguins, "target": "species"})
    except ImportError:
        print("palmerpenguins is not installed: the penguins table is left out")
    return out


def sweep_config(table: dict[str, Any], seed: int, trials: int, storage: str) -> SweepConfig:
    data = {k: v for k, v in table.items() if k not in ("name", "path")}
    overrides: dict[str, Any] = {
        "study.name": f"tabular-{table['name'].replace(' ', '-')}-{seed}",
        "study.storage": storage,
        "study.seed": seed,
        "study.n_trials": trials,
        "data.path": str(table["path"]),
        "train.device": "cpu",
        **{f"data.{k}": v for k, v in data.items()},
    }
    return load_sweep(benchlib.REPO / "sweeps/breast_cancer.yaml", flags=overrides)


def test_score(task: str, scores: dict[str, float]) -> float:
    return scores["test_accuracy"] if task == "classification" else scores["test_rmse"]


def tuned(config: SweepConfig, folder: Path) -> tuple[float, float]:
    study, seconds = benchlib.quiet_launch(config)
    assert isinstance(study, optuna.Study)
    started = time.perf_counter()
    metrics = export_best(study, folder / study.study_name, full=True)
    seconds += time.perf_counter() - started
    test = metrics["test"]
    return (test["accuracy"] if "accuracy" in test else test["rmse"]), seconds


def untuned(config: SweepConfig) -> tuple[float, float]:
    started = time.perf_counter()
    splits = load_splits(config.data, config.study.seed, "cpu")
    assert splits.test_x is not None and splits.test_y is not None
    both = dataclasses.replace(
        splits,
        train_x=torch.cat([splits.train_x, splits.val_x]),
        train_y=torch.cat([splits.train_y, splits.val_y]),
    )
    reg = Regularization(patience=config.train.max_epochs)  # everything off
    model, _ = train_config(config, both, reg, seed=config.study.seed, restore_best=False)
    scores = splits.scores("test", *evaluate(model, splits.test_x, splits.test_y))
    return test_score(splits.task, scores), time.perf_counter() - started


def boosting(config: SweepConfig) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    started = time.perf_counter()
    data = read_table(config.data)
    x = data.train.x.copy()
    for column in data.categorical:
        x[column] = x[column].astype("category")
    y = data.train.y.to_numpy()
    assert config.data.test_fraction is not None
    rest, held = holdout(y, config.data.test_fraction, data.task, TEST_SPLIT_SEED)
    if data.task == "classification":
        model: Any = HistGradientBoostingClassifier(random_state=config.study.seed)
        model.fit(x.iloc[rest], y[rest])
        score = float(np.mean(model.predict(x.iloc[held]) == y[held]))
    else:
        model = HistGradientBoostingRegressor(random_state=config.study.seed)
        model.fit(x.iloc[rest], y[rest])
        score = float(np.sqrt(np.mean((model.predict(x.iloc[held]) - y[held]) ** 2)))
    return score, time.perf_counter() - started


def cell(task: str, mean: float, sd: float, wall: float) -> str:
    shown = f"{mean:.2%} ± {sd:.2%}" if task == "classification" else f"{mean:.2f} ± {sd:.2f}"
    return f"{shown} ({wall:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    rows, verdicts = [], {"untuned": [0, 0], "boosting": [0, 0]}
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'tabular.db'}"
        for table in tables():
            results: dict[str, list[tuple[float, float]]] = {"tuned": [], "untuned": [], "gb": []}
            task = "regression" if table.get("task") == "regression" else "classification"
            for seed in range(args.seeds):
                config = sweep_config(table, seed, args.trials, storage)
                results["tuned"].append(tuned(config, Path(folder)))
                results["untuned"].append(untuned(config))
                results["gb"].append(boosting(config))
                print(table["name"], seed, {k: v[-1] for k, v in results.items()}, flush=True)
            mean = {k: statistics.fmean(s for s, _ in v) for k, v in results.items()}
            sd = {k: statistics.stdev(s for s, _ in v) if len(v) > 1 else 0.0
                  for k, v in results.items()}  # fmt: skip
            wall = {k: statistics.fmean(t for _, t in v) for k, v in results.items()}
            better = (lambda a, b: a > b) if task == "classification" else (lambda a, b: a < b)
            # "Matches" gradient boosting: within its seed-to-seed spread or better.
            beats_untuned = better(mean["tuned"], mean["untuned"])
            matches_gb = better(mean["tuned"], mean["gb"]) or abs(
                mean["tuned"] - mean["gb"]
            ) <= max(sd["gb"], sd["tuned"])
            verdicts["untuned"][0 if beats_untuned else 1] += 1
            verdicts["boosting"][0 if matches_gb else 1] += 1
            n_rows = len(read_table(sweep_config(table, 0, 1, storage).data).train.y)

            rows.append(
                [
                    f"{table['name']} ({n_rows} rows, "
                    f"{'accuracy' if task == 'classification' else 'RMSE'})",
                    *(cell(task, mean[k], sd[k], wall[k]) for k in ("tuned", "untuned", "gb")),
                    "yes" if beats_untuned else "**no**",
                    ("better" if better(mean["tuned"], mean["gb"]) else "within spread")
                    if matches_gb
                    else "**worse**",
                ]
            )
    body = (
        f"Test accuracy (higher is better) or RMSE (lower is better) on one fixed, stratified "
        f"20% test split per table, mean ± sd over {args.seeds} study seeds, and the mean wall "
        f"time per seed (tuned: the {args.trials}-trial sweep and its retrain; single thread). "
        "'matches' = better than gradient boosting, or within the larger of the two "
        "seed-to-seed spreads.\n\n"
        + benchlib.table(
            [
                "table",
                "tuned MLP (regsweep)",
                "untuned MLP",
                "HistGradientBoosting",
                "tuned beats untuned",
                "tuned vs boosting",
            ],
            rows,
        )
        + f"\n\nTuned beats untuned on {verdicts['untuned'][0]} of {len(rows)} tables; tuned "
        f"matches or beats gradient boosting on {verdicts['boosting'][0]} of {len(rows)}."
    )
    benchlib.write_section(
        "tabular",
        "Tabular: tuned MLP vs untuned MLP vs gradient boosting",
        f"python benchmarks/tabular.py --seeds {args.seeds} --trials {args.trials}",
        body,
    )


if __name__ == "__main__":
    main()
