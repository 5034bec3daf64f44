"""Tabular: regsweep's default sweep against the untuned MLP and gradient boosting, tuned too.

nice -n 10 python benchmarks/tabular.py [--splits 5] [--trials 30] [--max-train-rows 8000]

Real tables available offline, each written to a CSV per split and read through
``dataset: table`` as a user's files would be: breast cancer, wine and diabetes (CSV
copies of scikit-learn's bundled data in sweeps/data), the Palmer penguins (the CSV the
``palmerpenguins`` package ships: categorical columns and missing values), phishing
websites, image segments and the NASA shuttle (the CSVs river ships,
``phishing.csv.gz``, ``segment.csv.zip`` and ``shuttle.csv.gz``) and Fair's affairs
survey (the CSV statsmodels ships, ``fair.csv``).

Every table is split ``--splits`` times (split k: seed k, 20% test rows, stratified by
class for classification), and every method sees the same training and test rows of a
split, so the methods are compared pairwise, split by split. Tables larger than
``--max-train-rows`` training rows keep a stratified sample of that many (the test rows
stay whole): the machine has two shared cores.

Phase 1, the scaler (``data.scaler``): the untuned MLP with each numeric scaler, on
every split of every table; the scaler with the best mean rank is used in phase 2 (and is
regsweep's default, by this evidence).

Phase 2, on the same splits:

- tuned MLP: sweeps/breast_cancer.yaml (TPE + Hyperband over dropout, weight decay, L1,
  batch norm, patience; ``--trials`` trials), study seed k, then the best trial retrained
  on train + validation for its best epoch count (``export --full``) and tested once;
- untuned MLP: the same network and training with no regularization, on train +
  validation, for max_epochs;
- HistGradientBoostingClassifier / Regressor with scikit-learn's defaults (categorical
  columns as pandas categories, missing values left to it), on train + validation;
- HistGradientBoosting tuned by Optuna (TPE, seed k, the same number of trials) on the
  MLP's own validation split (log loss or MSE, as the MLP's sweep), then refitted with
  the best parameters on train + validation.

PyTorch and gradient boosting both run on one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import optuna
import pandas as pd
import torch
from rich.console import Console
from scipy import stats
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from regsweep.config.loading import read_yaml, resolve_config
from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.preprocess import SCALERS
from regsweep.data.resample import sweep_partition
from regsweep.data.splits import load_splits
from regsweep.data.tables import read_table
from regsweep.engine.fit import evaluate
from regsweep.engine.recipe import train_config
from regsweep.insight.export import export_best
from regsweep.sweep.launch import launch

DATA = benchlib.REPO / "sweeps" / "data"
SWEEP = benchlib.REPO / "sweeps" / "breast_cancer.yaml"  # regsweep's default tabular sweep
TEST_FRACTION = 0.2
# A split where two methods differ by less than this is a tie: accuracy in points (one
# test row of the smallest table is 2.8), RMSE relative.
TIE_ACCURACY, TIE_RMSE = 0.001, 0.005
# The goal's "matches tuned gradient boosting": within 1 point of accuracy, 5% of RMSE.
MATCH_ACCURACY, MATCH_RMSE = 0.01, 0.05


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    path: Path
    target: str
    task: str = "classification"
    keys: dict[str, Any] = dataclasses.field(default_factory=dict)  # other data.* keys


def package_file(package: str, *parts: str) -> Path | None:
    try:
        module = __import__(package)
    except ImportError:
        print(f"{package} is not installed (pip install -e '.[dev]'): its table is left out")
        return None
    return Path(module.__file__).parent.joinpath(*parts)


def tables() -> list[Table]:
    out = [
        Table("breast cancer", DATA / "breast_cancer.csv", "diagnosis"),
        Table("wine", DATA / "wine.csv", "cultivar"),
        Table(
            "diabetes",
            DATA / "diabetes.csv",
            "progression",
            "regression",
            {"task": "regression", "categorical": ["sex"]},
        ),
    ]
    shipped = [
        ("penguins", ("palmerpenguins", "data", "penguins.csv"), "species", "classification"),
        ("phishing", ("river", "datasets", "phishing.csv.gz"), "is_phishing", "classification"),
        ("segment", ("river", "datasets", "segment.csv.zip"), "category", "classification"),
        ("fair", ("statsmodels", "datasets", "fair", "fair.csv"), "affairs", "regression"),
        ("shuttle", ("river", "datasets", "shuttle.csv.gz"), "anomaly", "classification"),
    ]
    for name, (package, *parts), target, task in shipped:
        path = package_file(package, *parts)
        if path is not None:
            out.append(Table(name, path, target, task, {"task": task}))
    return out


@dataclasses.dataclass(frozen=True)
class Split:
    train: Path
    test: Path
    n_train: int
    n_test: int


def write_split(table: Table, k: int, max_train: int, folder: Path) -> Split:
    """Split ``k`` of ``table`` as two CSV files a user could have written."""
    frame = pd.read_csv(table.path)
    y = frame[table.target]
    stratify = y if table.task == "classification" else None
    train, test = train_test_split(
        frame, test_size=TEST_FRACTION, random_state=k, stratify=stratify
    )
    if len(train) > max_train:
        keep = train[table.target] if table.task == "classification" else None
        train, _ = train_test_split(train, train_size=max_train, random_state=k, stratify=keep)
    stem = f"{table.name.replace(' ', '_')}-{k}"
    paths = folder / f"{stem}-train.csv", folder / f"{stem}-test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    return Split(paths[0], paths[1], len(train), len(test))


def sweep_config(
    table: Table,
    split: Split,
    k: int,
    trials: int,
    storage: str,
    scaler: str,
    max_epochs: int | None = None,
) -> SweepConfig:
    overrides: dict[str, Any] = {
        "train.max_epochs": max_epochs,  # None: the sweep file's
        "study.name": f"tabular-{table.name.replace(' ', '-')}-{k}-{scaler}",
        "study.storage": storage,
        "study.seed": k,
        "study.n_trials": trials,
        "data.path": str(split.train),
        "data.test_path": str(split.test),
        "data.target": table.target,
        "data.scaler": scaler,
        "train.device": "cpu",
        "train.threads": 1,
        **{f"data.{key}": value for key, value in table.keys.items()},
    }
    raw = read_yaml(SWEEP)
    raw["data"].pop("test_fraction")  # each split has its own test file
    return resolve_config(raw, source=str(SWEEP), flags=overrides)


# Per table: on how many splits the best trial's best epoch was its last possible one
# (max_epochs): a network still improving when its epoch budget ran out.
AT_THE_CAP: dict[str, int] = {}


def tuned_mlp(config: SweepConfig, folder: Path, table: str) -> float:
    study, _ = launch(config, console=Console(file=io.StringIO()))
    metrics = export_best(study, folder / study.study_name, full=True)
    best_epoch = study.best_trial.user_attrs.get("best_epoch")
    capped = best_epoch is not None and int(best_epoch) >= config.train.max_epochs
    AT_THE_CAP[table] = AT_THE_CAP.get(table, 0) + capped
    test = metrics["test"]
    return float(test["accuracy"] if "accuracy" in test else test["rmse"])


def untuned_mlp(config: SweepConfig) -> float:
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
    return scores["test_accuracy"] if splits.task == "classification" else scores["test_rmse"]


def boosting_inputs(config: SweepConfig) -> tuple[Any, ...]:
    """Training and test rows as gradient boosting takes them, and the MLP's validation rows."""
    data = read_table(config.data)
    assert data.test is not None

    def frame(x: pd.DataFrame) -> pd.DataFrame:
        x = x.copy()
        for column in data.categorical:
            x[column] = x[column].astype("category")
        return x

    x, y = frame(data.train.x), data.train.y.to_numpy()
    test_x, test_y = frame(data.test.x), data.test.y.to_numpy()
    if data.categorical:  # one set of categories for both files
        for column in data.categorical:
            kinds = pd.api.types.union_categoricals([x[column], test_x[column]]).categories
            x[column] = x[column].cat.set_categories(kinds)
            test_x[column] = test_x[column].cat.set_categories(kinds)
    # The very validation rows the MLP's sweep is scored on (same function, same seed).
    rows = sweep_partition(y, data.task, config.data.val_fraction, config.study.seed)
    return data.task, x, y, test_x, test_y, rows.fit, rows.val


def boosting_model(task: str, seed: int, **params: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = (
        HistGradientBoostingClassifier
        if task == "classification"
        else (HistGradientBoostingRegressor)
    )
    return kind(random_state=seed, **params)


def test_score(task: str, model: Any, x: pd.DataFrame, y: np.ndarray) -> float:
    predicted = model.predict(x)
    if task == "classification":
        return float(np.mean(predicted == y))
    return float(np.sqrt(np.mean((predicted - y) ** 2)))


def default_boosting(config: SweepConfig) -> float:
    task, x, y, test_x, test_y, _, _ = boosting_inputs(config)
    model = boosting_model(task, config.study.seed).fit(x, y)
    return test_score(task, model, test_x, test_y)


def tuned_boosting(config: SweepConfig, trials: int) -> float:
    from sklearn.metrics import log_loss, mean_squared_error

    task, x, y, test_x, test_y, fit_rows, val_rows = boosting_inputs(config)
    seed = config.study.seed

    def objective(trial: optuna.Trial) -> float:
        params = {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_iter": trial.suggest_int("max_iter", 50, 500, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 4, 128, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 2, 100, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 10.0, log=True),
            "max_features": trial.suggest_float("max_features", 0.4, 1.0),
        }
        model = boosting_model(task, seed, **params).fit(x.iloc[fit_rows], y[fit_rows])
        if task == "classification":
            proba = model.predict_proba(x.iloc[val_rows])
            return float(log_loss(y[val_rows], proba, labels=model.classes_))
        return float(mean_squared_error(y[val_rows], model.predict(x.iloc[val_rows])))

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    model = boosting_model(task, seed, **study.best_params).fit(x, y)
    return test_score(task, model, test_x, test_y)


def timed(run: Callable[[], float]) -> tuple[float, float]:
    started = time.perf_counter()
    score = run()
    return score, time.perf_counter() - started


# Reporting ----------------------------------------------------------------------------


def shown(task: str, value: float) -> str:
    return f"{value:.2%}" if task == "classification" else f"{value:.3g}"


def better(task: str, a: float, b: float) -> float:
    """How much ``a`` beats ``b``: accuracy points, or RMSE as a share of ``b``'s."""
    return a - b if task == "classification" else (b - a) / b


def interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% t interval."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def gain(task: str, diffs: list[float]) -> str:
    mean, low, high = interval(diffs)
    unit = (
        (lambda v: f"{v * 100:+.2f}")
        if task == "classification"
        else (lambda v: f"{v * 100:+.1f}%")
    )
    return f"{unit(mean)} [{unit(low)}, {unit(high)}]"


def record(task: str, diffs: list[float]) -> str:
    tie = TIE_ACCURACY if task == "classification" else TIE_RMSE
    wins = sum(d > tie for d in diffs)
    losses = sum(d < -tie for d in diffs)
    return f"{wins}/{len(diffs) - wins - losses}/{losses}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--max-train-rows", type=int, default=8000)
    parser.add_argument("--scaler", choices=SCALERS, help="skip phase 1 and use this scaler")
    parser.add_argument("--tables", help="comma-separated names (default: all)")
    parser.add_argument(
        "--max-epochs", type=int, help="train.max_epochs for every MLP (default: the sweep's)"
    )
    parser.add_argument("--section", default="tabular", help="BENCHMARKS.md section to write")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    chosen = [t for t in tables() if args.tables is None or t.name in args.tables.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        folder = Path(tmp)
        storage = f"sqlite:///{folder / 'tabular.db'}"
        splits = {
            t.name: [write_split(t, k, args.max_train_rows, folder) for k in range(args.splits)]
            for t in chosen
        }

        def config(t: Table, k: int, trials: int, scaler: str) -> SweepConfig:
            return sweep_config(t, splits[t.name][k], k, trials, storage, scaler, args.max_epochs)

        # Phase 1: the untuned MLP with every scaler, split by split.
        by_scaler: dict[str, dict[str, list[float]]] = {}
        scaler_seconds = {s: 0.0 for s in SCALERS}
        if args.scaler is None:
            for t in chosen:
                by_scaler[t.name] = {s: [] for s in SCALERS}
                for k in range(args.splits):
                    for s in SCALERS:
                        score, seconds = timed(lambda: untuned_mlp(config(t, k, 1, s)))  # noqa: B023
                        by_scaler[t.name][s].append(score)
                        scaler_seconds[s] += seconds
                    print("scalers", t.name, k, {s: v[-1] for s, v in by_scaler[t.name].items()},
                          flush=True)  # fmt: skip
            scaler = best_scaler(chosen, by_scaler)
        else:
            scaler = args.scaler
        phase1 = time.perf_counter() - started

        # Phase 2: the four methods on the same splits, with the chosen scaler.
        methods = ("tuned", "untuned", "gb", "gb_tuned")
        results: dict[str, dict[str, list[float]]] = {}
        seconds: dict[str, dict[str, list[float]]] = {}
        for t in chosen:
            results[t.name] = {m: [] for m in methods}
            seconds[t.name] = {m: [] for m in methods}
            for k in range(args.splits):
                c = config(t, k, args.trials, scaler)
                runs = {
                    "tuned": lambda c=c, t=t: tuned_mlp(c, folder, t.name),
                    "untuned": lambda c=c: untuned_mlp(c),
                    "gb": lambda c=c: default_boosting(c),
                    "gb_tuned": lambda c=c: tuned_boosting(c, args.trials),
                }
                for m, run in runs.items():
                    score, wall = timed(run)
                    results[t.name][m].append(score)
                    seconds[t.name][m].append(wall)
                latest = {m: (round(v[-1], 4), round(seconds[t.name][m][-1], 1))
                          for m, v in results[t.name].items()}  # fmt: skip
                print(t.name, k, latest, flush=True)
    total = time.perf_counter() - started
    body = report(args, chosen, splits, scaler, by_scaler, scaler_seconds, results, seconds)
    body += f"\n\nWhole run: {total / 60:.0f} min (phase 1: {phase1 / 60:.0f} min)."
    command = (
        f"nice -n 10 python benchmarks/tabular.py --splits {args.splits} --trials {args.trials} "
        f"--max-train-rows {args.max_train_rows}"
        + (f" --scaler {args.scaler}" if args.scaler else "")
        + (f" --tables {args.tables}" if args.tables else "")
        + (f" --max-epochs {args.max_epochs}" if args.max_epochs else "")
        + (f" --section {args.section}" if args.section != "tabular" else "")
    )
    title = "Tabular: tuned MLP vs untuned MLP vs gradient boosting"
    if args.max_epochs:
        title += f", {args.max_epochs} epochs"
    benchlib.write_section(args.section, title, command, body)


def best_scaler(chosen: list[Table], by_scaler: dict[str, dict[str, list[float]]]) -> str:
    """The scaler with the best mean rank over every table and split (ties share ranks)."""
    ranks: dict[str, list[float]] = {s: [] for s in SCALERS}
    for t in chosen:
        sign = -1.0 if t.task == "classification" else 1.0  # rank 1 is the best
        for k in range(len(by_scaler[t.name][SCALERS[0]])):
            scores = [sign * by_scaler[t.name][s][k] for s in SCALERS]
            for s, rank in zip(SCALERS, stats.rankdata(scores), strict=True):
                ranks[s].append(float(rank))
    return min(SCALERS, key=lambda s: (statistics.fmean(ranks[s]), SCALERS.index(s)))


def report(
    args: argparse.Namespace,
    chosen: list[Table],
    splits: dict[str, list[Split]],
    scaler: str,
    by_scaler: dict[str, dict[str, list[float]]],
    scaler_seconds: dict[str, float],
    results: dict[str, dict[str, list[float]]],
    seconds: dict[str, dict[str, list[float]]],
) -> str:
    parts = [
        f"{args.splits} splits per table (split k: seed k, {TEST_FRACTION:.0%} test rows, "
        f"stratified for classification; at most {args.max_train_rows:,} training rows, a "
        "stratified sample, where a table has more), every method on the same rows. Scores "
        "are test accuracy (higher is better) or RMSE (lower is better), means over the "
        "splits. Differences are paired by split: mean and 95% t interval, in accuracy "
        "points or % of RMSE (positive: the tuned MLP is better); win/tie/loss counts the "
        f"splits (a tie: within {TIE_ACCURACY:.1%} points or {TIE_RMSE:.1%} of RMSE). "
        "PyTorch and gradient boosting on one thread."
    ]
    if by_scaler:
        rows = []
        for t in chosen:
            means = {s: statistics.fmean(by_scaler[t.name][s]) for s in SCALERS}
            diffs = {
                s: [
                    better(t.task, a, b)
                    for a, b in zip(by_scaler[t.name][s], by_scaler[t.name]["standard"],
                                    strict=True)
                ]
                for s in SCALERS
            }  # fmt: skip
            rows.append(
                [t.name]
                + [shown(t.task, means[s]) for s in SCALERS]
                + [gain(t.task, diffs[s]) for s in SCALERS if s != "standard"]
            )
        parts.append(
            "**Phase 1: the numeric scaler** (`data.scaler`), on the untuned MLP (no "
            "regularization, train + validation, max_epochs), every split of every table. "
            f"Chosen by mean rank over all splits: **{scaler}**. Wall time, all tables: "
            + ", ".join(f"{s} {scaler_seconds[s]:.0f} s" for s in SCALERS)
            + ".\n\n"
            + benchlib.table(
                ["table", *SCALERS] + [f"{s} vs standard" for s in SCALERS if s != "standard"],
                rows,
            )
        )
    rows, goal_untuned, goal_gb = [], 0, 0
    for t in chosen:
        r, w = results[t.name], seconds[t.name]
        n_train = splits[t.name][0].n_train
        vs = {m: [better(t.task, a, b) for a, b in zip(r["tuned"], r[m], strict=True)]
              for m in ("untuned", "gb", "gb_tuned")}  # fmt: skip
        beats = statistics.fmean(vs["untuned"]) > 0
        mean_tuned, mean_gb = statistics.fmean(r["tuned"]), statistics.fmean(r["gb_tuned"])
        matches = (
            mean_tuned >= mean_gb - MATCH_ACCURACY
            if t.task == "classification"
            else mean_tuned <= mean_gb * (1 + MATCH_RMSE)
        )
        goal_untuned += beats
        goal_gb += matches
        metric = "accuracy" if t.task == "classification" else "RMSE"
        rows.append(
            [
                f"{t.name} ({n_train:,} train / {splits[t.name][0].n_test:,} test, {metric})",
                *(
                    f"{shown(t.task, statistics.fmean(r[m]))} ({statistics.fmean(w[m]):.0f} s)"
                    for m in ("tuned", "untuned", "gb", "gb_tuned")
                ),
                f"{gain(t.task, vs['untuned'])} {record(t.task, vs['untuned'])}"
                + ("" if beats else " **no**"),
                f"{gain(t.task, vs['gb_tuned'])} {record(t.task, vs['gb_tuned'])}"
                + (" matches" if matches else " **no**"),
                f"{gain(t.task, vs['gb'])} {record(t.task, vs['gb'])}",
                f"{AT_THE_CAP.get(t.name, 0)}/{len(r['tuned'])}",
            ]
        )
    parts.append(
        f"**Phase 2** with `scaler: {scaler}`; the tuned MLP and tuned boosting ran "
        f"{args.trials} trials each"
        + (f", every MLP up to {args.max_epochs} epochs" if args.max_epochs else "")
        + ". Cells: mean test score (mean wall seconds per split, tuned: the sweep and its "
        "retrain). The last column counts the splits where the best trial's best epoch was "
        "its last (the network still improving when max_epochs ended it).\n\n"
        + benchlib.table(
            [
                "table",
                "tuned MLP (regsweep)",
                "untuned MLP",
                "boosting, defaults",
                "boosting, tuned",
                "tuned MLP vs untuned: diff [95%] W/T/L",
                "vs tuned boosting",
                "vs default boosting",
                "best epoch = max_epochs",
            ],
            rows,
        )
        + f"\n\nThe tuned MLP beats the untuned one (mean paired difference) on {goal_untuned} "
        f"of {len(chosen)} tables; it matches tuned gradient boosting (within "
        f"{MATCH_ACCURACY * 100:.0f} point of accuracy or {MATCH_RMSE:.0%} of RMSE) on "
        f"{goal_gb} of {len(chosen)}."
    )
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
