"""A user's own CSV through the real CLI on real SQLite: launch, trials, export, predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

import regsweep
from tests.conftest import run_cli, run_cli_here
from tests.data.tabular import DIABETES, mixed_table


def table_sweep(folder: Path, data: dict[str, Any], **study: Any) -> Path:
    raw = {
        "study": {
            "name": "own",
            "storage": f"sqlite:///{folder / 'study.db'}",
            "n_trials": 4,
            "seed": 0,
            "sampler": {"name": "tpe", "options": {"n_startup_trials": 2}},
            "pruner": "none",
            **study,
        },
        "data": {"dataset": "table", "val_fraction": 0.25, **data},
        "model": {"hidden": [32, 16]},
        "train": {"max_epochs": 6, "batch_size": 32, "device": "cpu", "threads": 1},
        "search_space": {
            "dropout": {"low": 0.0, "high": 0.3},
            "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
            "batch_norm": {"choices": [False, True]},
        },
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_csv_sweep_export_and_predict_raw_rows(tmp_path: Path) -> None:
    frame = mixed_table(400)
    train, test = frame.iloc[:300], frame.iloc[300:].copy()
    test.loc[test.index[:3], "size"] = "never seen"  # an unseen category must not crash
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    sweep = table_sweep(
        tmp_path,
        {"path": "train.csv", "test_path": "test.csv", "target": "diagnosis"},
    )
    launched = run_cli("launch", sweep, cwd=tmp_path)
    assert launched.code == 0, launched.stderr
    listed = run_cli_here("trials", sweep, cwd=tmp_path)
    assert listed.code == 0 and "val acc" in listed.stdout
    exported = run_cli("export", sweep, "-o", "best", cwd=tmp_path)
    assert exported.code == 0, exported.stderr
    assert "test accuracy" in exported.stdout

    predictor = regsweep.load_predictor(tmp_path / "best")
    raw_rows = pd.read_csv(tmp_path / "test.csv").drop(columns=["diagnosis"])
    labels = predictor.predict(raw_rows)
    assert set(labels) <= {"benign", "malignant"} and len(labels) == 100
    proba = predictor.predict_proba(raw_rows)
    assert proba.shape == (100, 2) and np.allclose(proba.sum(1), 1)
    assert list(predictor.classes_) == ["benign", "malignant"]
    # The export's preprocessor is the one the model was trained and tested with: the
    # accuracy on the raw test file is the one export measured on its prepared tensors.
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    accuracy = float(np.mean(labels == test["diagnosis"].to_numpy()))
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)
    assert accuracy > 0.8
    assert isinstance(regsweep.load_model(tmp_path / "best"), __import__("torch").nn.Module)


def test_regression_csv_packed_through_the_cli(tmp_path: Path) -> None:
    frame = pd.read_csv(DIABETES)
    frame.iloc[:350].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[350:].to_csv(tmp_path / "test.csv", index=False)
    data = {
        "path": "train.csv",
        "test_path": "test.csv",
        "target": "progression",
        "categorical": ["sex"],
    }
    sweep = table_sweep(tmp_path, data, pack=2)
    launched = run_cli("launch", sweep, cwd=tmp_path)
    assert launched.code == 0, launched.stderr
    assert "val_rmse" in launched.stdout and "val_r2" in launched.stdout
    listed = run_cli_here("trials", sweep, cwd=tmp_path)
    assert "val rmse" in listed.stdout and "val r2" in listed.stdout
    assert "val acc" not in listed.stdout
    best = run_cli_here("best", sweep, cwd=tmp_path)
    assert "best_val_rmse" in best.stdout and "best_val_accuracy" not in best.stdout
    exported = run_cli("export", sweep, "-o", "best", cwd=tmp_path)
    assert exported.code == 0, exported.stderr
    assert "test rmse" in exported.stdout and "test r2" in exported.stdout

    predictor = regsweep.load_predictor(tmp_path / "best")
    assert not hasattr(predictor, "predict_proba")
    test = frame.iloc[350:]
    values = predictor.predict(test.drop(columns=["progression"]))
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["task"] == "regression"
    rmse = float(np.sqrt(np.mean((values - test["progression"].to_numpy()) ** 2)))
    assert rmse == pytest.approx(metrics["test"]["rmse"], rel=1e-4)
    assert 0 < metrics["test"]["r2"] < 1


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "missing target": ({"target": "label"}, "data.target", "'label' is not in"),
    "text not categorical": (
        {"target": "diagnosis", "categorical": []},
        "data.categorical",
        "'size'",
    ),
    "one class": ({"target": "one"}, "data.target", "one class"),
    "nan target": ({"target": "gappy"}, "data.target", "line 3"),
    "test columns differ": (
        {"target": "diagnosis", "test_path": "other.csv"},
        "data.test_path",
        "missing 'size'",
    ),
    "does not parse": ({"target": "diagnosis", "path": "broken.csv"}, "data.path", "line 4"),
    "header without rows": ({"target": "diagnosis", "path": "empty.csv"}, "data.path", "no rows"),
    "infinite target": (
        {"target": "overflow", "task": "regression"},
        "data.target",
        "infinite on 1 row(s), line 4",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_table_is_one_line_exit_2_and_no_study(tmp_path: Path, case: str) -> None:
    frame = mixed_table(60).assign(one="x", gappy=1.0, overflow=np.linspace(0, 1, 60))
    frame.loc[1, "gappy"] = np.nan
    frame.loc[2, "overflow"] = np.inf
    (tmp_path / "empty.csv").write_text(",".join(frame.columns) + "\n")
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.drop(columns=["size"]).to_csv(tmp_path / "other.csv", index=False)
    (tmp_path / "broken.csv").write_text("a,b,diagnosis\n1,2,x\n3,4,y\n5,6,7,8\n")
    keys, key, words = BAD[case]
    sweep = table_sweep(tmp_path, {"path": "t.csv", **keys})
    result = run_cli_here("launch", sweep, cwd=tmp_path)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert key in lines[0] and words in lines[0] and ".csv" in lines[0]
    db = tmp_path / "study.db"
    assert not db.exists() or not optuna.get_all_study_summaries(f"sqlite:///{db}")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"dataset": "table", "path": "t.csv"}, "needs target"),
        ({"dataset": "mnist", "target": "y"}, "target applies to dataset 'table' only"),
        ({"dataset": "digits", "task": "regression"}, "task 'regression' needs dataset"),
        ({"dataset": "torchvision"}, "needs name"),
        ({"dataset": "arrays", "path": "a.npz", "target": "y"}, "target applies to dataset"),
        (
            {"dataset": "table", "path": "t.csv", "target": "y", "test_path": "u.csv",
             "test_fraction": 0.2},
            "not both",
        ),
    ],
)  # fmt: skip
def test_data_keys_are_checked_by_validate(
    tmp_path: Path, data: dict[str, Any], words: str
) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"data": data}))
    result = run_cli_here("validate", sweep, cwd=tmp_path)
    assert result.code == 2 and words in result.stderr and "data" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scaler_is_stored_applied_by_the_predictor_and_fixed_on_resume(tmp_path: Path) -> None:
    frame = mixed_table(300)
    frame.loc[5, "mean radius"] = np.inf  # an overflowed cell: a gap, in training and predict
    frame.iloc[:220].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[220:].to_csv(tmp_path / "test.csv", index=False)
    data = {"path": "train.csv", "test_path": "test.csv", "target": "diagnosis"}
    sweep = table_sweep(tmp_path, {**data, "scaler": "quantile"}, n_trials=2)
    launched = run_cli("launch", sweep, cwd=tmp_path)
    assert launched.code == 0, launched.stderr
    assert "warning: data.path: column 'mean radius'" in launched.stderr
    assert "infinite on 1 row(s) (line 7" in launched.stderr
    study = optuna.load_study(study_name="own", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.user_attrs["regsweep_config"]["data"]["scaler"] == "quantile"

    exported = run_cli("export", sweep, "-o", "best", cwd=tmp_path)
    assert exported.code == 0, exported.stderr
    predictor = regsweep.load_predictor(tmp_path / "best")
    numeric = predictor.preprocessor.named_transformers_["numeric"]
    assert type(numeric.named_steps["scale"]).__name__ == "NormalQuantiles"
    test = frame.iloc[220:]
    labels = predictor.predict(test.drop(columns=["diagnosis"]))
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    accuracy = float(np.mean(labels == test["diagnosis"].to_numpy()))
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)

    # Another scaler changes what every stored trial's value means: refused like any data.
    changed = table_sweep(tmp_path, {**data, "scaler": "robust"}, n_trials=3)
    resumed = run_cli_here("launch", changed, cwd=tmp_path)
    assert resumed.code == 2, resumed.stderr
    line = resumed.stderr.strip().splitlines()[-1]
    assert 'data.scaler: "quantile" -> "robust"' in line and "another --study" in line, line
    assert len(study.get_trials()) == 2


def test_a_messy_excel_export_ends_in_a_finished_sweep_with_one_warning_per_column(
    tmp_path: Path,
) -> None:
    frame = mixed_table(200)
    # As Excel writes it in a German locale: a BOM, its sep= line, ';' between fields,
    # decimal commas, '?' for a missing value, a customer number and a date per row.
    rows = frame.assign(
        customer=[f"K-{i:05d}" for i in range(len(frame))],
        day=pd.date_range("2024-01-01", periods=len(frame)).strftime("%d.%m.%Y"),
    )
    rows["mean radius"] = rows["mean radius"].map(lambda v: f"{v:.2f}".replace(".", ","))
    rows["mean texture"] = rows["mean texture"].map(
        lambda v: "?" if pd.isna(v) else f"{v:.2f}".replace(".", ",")
    )
    text = "sep=;\n" + rows.to_csv(sep=";", index=False, lineterminator="\r\n")
    (tmp_path / "export.csv").write_bytes(("\ufeff" + text).encode("utf-8"))
    data = {"path": "export.csv", "target": "diagnosis", "sep": ";", "skiprows": 1}
    launched = run_cli("launch", table_sweep(tmp_path, data, n_trials=2), cwd=tmp_path)
    assert launched.code == 0, launched.stderr
    warnings = [line for line in launched.stderr.splitlines() if line.startswith("warning: ")]
    said = "\n".join(warnings)
    assert len(warnings) == 4, said
    for words in ("'customer'", "identifier", "'day'", "dates", "data.decimal: ','", "'?'"):
        assert words in said, said
    assert "2 complete" in launched.stdout or "complete" in launched.stdout

    fixed = {**data, "decimal": ",", "na_values": ["?"], "drop": ["customer", "day"]}
    (tmp_path / "study.db").unlink()
    launched = run_cli("launch", table_sweep(tmp_path, fixed, n_trials=2), cwd=tmp_path)
    assert launched.code == 0, launched.stderr
    assert "warning" not in launched.stderr, launched.stderr
    predictor_rows = pd.read_csv(
        tmp_path / "export.csv", sep=";", skiprows=1, decimal=",", na_values=["?"]
    )
    assert predictor_rows["mean radius"].dtype.kind == "f"  # read as the sweep read it
