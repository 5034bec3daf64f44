"""Ablation statistics, report sections and output checks on small real objects, no training
except one tiny ablation on generated data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.engine.recipe import build_model, paired_model
from regsweep.errors import ConfigError
from regsweep.insight.ablation import (
    ABLATION_ATTR,
    effects_of,
    retrain,
    run_ablation,
    summarize,
    variants,
)
from regsweep.insight.outputs import prepare_dir, prepare_file, write_atomic
from regsweep.insight.paths import grid
from regsweep.insight.report import build_report
from regsweep.insight.retrain import run_retrains
from regsweep.insight.studyview import effective, is_unregularized
from regsweep.insight.verdict import findings, verdict_markdown
from regsweep.sweep.study import CONFIG_ATTR, open_study, stored_config
from tests.conftest import IdxData, idx_sweep

MAX_EPOCHS = 10
OFF = {"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "batch_norm": False, "patience": 10}


def config_for(**search_space: Any) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "study": {"name": "unit"},
            "data": {"dataset": "digits"},
            "train": {"max_epochs": MAX_EPOCHS},
            "search_space": {**OFF, **search_space},
        }
    )


def add_trial(
    study: optuna.Study,
    params: dict[str, Any],
    value: float | None,
    state: TrialState = TrialState.COMPLETE,
) -> None:
    epochs = 6 if state == TrialState.COMPLETE else 3
    val = [1.0 / (e + 1) + 0.1 for e in range(epochs)]
    study.add_trial(
        create_trial(
            params=params,
            distributions={
                "dropout": FloatDistribution(0.0, 0.5),
                "weight_decay": CategoricalDistribution([0.0]),
                "l1": FloatDistribution(0.0, 1e-4),
                "batch_norm": CategoricalDistribution([False, True]),
                "patience": CategoricalDistribution([10]),
            },
            value=value,
            state=state,
            intermediate_values=dict(enumerate(val, start=1)),
            user_attrs={
                "train_loss": [v / 2 for v in val],
                "val_loss": val,
                "epochs_run": epochs,
                "best_epoch": epochs,
                "stopped_early": False,
                "weight_sparsity": 0.05 + params["l1"] * 1000,
                "best_val_accuracy": 0.9,
            },
        )
    )


def synthetic_study(with_plain_trial: bool) -> optuna.Study:
    study = optuna.create_study()
    study.set_user_attr(CONFIG_ATTR, stored_config(config_for()))
    add_trial(study, {**OFF, "dropout": 0.2, "l1": 1e-5, "batch_norm": True}, 0.3)
    add_trial(study, {**OFF, "dropout": 0.4, "l1": 5e-5}, 0.4)
    add_trial(study, {**OFF, "dropout": 0.1, "l1": 2e-5}, None, TrialState.PRUNED)
    if with_plain_trial:
        add_trial(study, dict(OFF), 0.5)
    return study


def test_variants_remove_each_regularizer_in_turn() -> None:
    best = {"dropout": 0.3, "weight_decay": 1e-4, "l1": 0.0, "batch_norm": True, "patience": 3}
    rows = variants(best, MAX_EPOCHS)
    assert [r.key for r in rows] == ["best", *(f"no_{n}" for n in REGULARIZERS), "none"]
    assert rows[1].params == {**best, "dropout": 0.0}
    assert rows[5].params == {**best, "patience": MAX_EPOCHS}
    assert rows[-1].params == OFF
    # L1 was already off in best: that variant is the same training run.
    assert effective(rows[3].params, MAX_EPOCHS) == effective(best, MAX_EPOCHS)
    assert is_unregularized({**OFF, "patience": 50}, MAX_EPOCHS)
    assert not is_unregularized({**OFF, "patience": 3}, MAX_EPOCHS)


def runs(values: list[float], gap: float = 0.1) -> list[dict[str, Any]]:
    return [
        {"seed": i, "val_loss": v, "val_accuracy": 1 - v, "test_loss": v, "test_accuracy": 1 - v,
         "gap": gap, "best_epoch": 4, "epochs_run": 6, "weight_sparsity": 0.01,
         "train_loss_curve": [v + 1, v], "val_loss_curve": [v + 1, v]}
        for i, v in enumerate(values)
    ]  # fmt: skip


def scripted(per_key: dict[str, list[float]], best: dict[str, Any]) -> dict[str, Any]:
    """An ablation result from scripted per-seed validation losses."""
    rows = variants(best, MAX_EPOCHS)
    keys = {effective(r.params, MAX_EPOCHS): r.key for r in rows}
    unique: dict[Any, Any] = {}
    for row in rows:
        unique.setdefault(effective(row.params, MAX_EPOCHS), row.key)
    result = summarize(
        rows=rows,
        runs_of={
            e: runs(per_key[k], gap=0.3 if k == "none" else 0.1) for e, k in unique.items()
        },
        same_as={r.key: unique[effective(r.params, MAX_EPOCHS)] for r in rows
                 if unique[effective(r.params, MAX_EPOCHS)] != r.key},
        max_epochs=MAX_EPOCHS,
    )  # fmt: skip
    assert keys
    n = len(per_key["best"])
    result.update(trial=0, seeds=list(range(n)), max_epochs=MAX_EPOCHS, created="now")
    return result


BEST = {"dropout": 0.3, "weight_decay": 1e-3, "l1": 0.0, "batch_norm": False, "patience": 3}


def test_verdict_classifies_and_orders_from_scripted_seeds() -> None:
    result = scripted(
        {
            "best": [0.20, 0.21, 0.22],
            "no_dropout": [0.30, 0.31, 0.29],  # helps: +0.09, CI [0.047, 0.133]
            "no_weight_decay": [0.215, 0.205, 0.225],  # CI across 0
            "no_patience": [0.18, 0.19, 0.20],  # hurts: -0.02 on every seed
            "none": [0.40, 0.41, 0.42],
        },
        BEST,
    )
    effect = effects_of(result)["no_dropout"]["val_loss"]
    assert effect.mean == pytest.approx(0.09)
    assert effect.low == pytest.approx(0.0469735, rel=1e-5)  # 0.09 - 4.302653 * 0.01
    found = findings(result)
    assert [f.name for f in found] == ["all", "dropout", "patience", "weight_decay",
                                       "l1", "batch_norm"]  # fmt: skip
    by_name = {f.name: f for f in found}
    assert by_name["dropout"].verdict == "helps"
    assert "helps: without it validation loss is 0.0900 higher" in by_name["dropout"].sentence
    assert "95% CI +0.0470 to +0.1330, 3 paired seeds" in by_name["dropout"].sentence
    assert by_name["patience"].verdict == "hurts"
    assert by_name["weight_decay"].verdict == "no measurable effect"
    assert "wide, so an effect as large as" in by_name["weight_decay"].sentence
    assert by_name["l1"].verdict is None and "off in the best config" in by_name["l1"].sentence
    assert by_name["all"].verdict == "helps"
    assert "0.1000 with all of it vs 0.3000 with none" in by_name["all"].evidence
    markdown = verdict_markdown(result, "unit")
    assert "**helps**: Dropout 0.3 helps" in markdown


def test_verdict_with_one_seed_says_no_interval_exists() -> None:
    result = scripted(
        {"best": [0.2], "no_dropout": [0.9], "no_weight_decay": [0.2], "no_patience": [0.2],
         "none": [0.9]},
        BEST,
    )  # fmt: skip
    by_name = {f.name: f for f in findings(result)}
    assert by_name["dropout"].verdict == "no interval"
    assert "no confidence interval exists" in by_name["dropout"].sentence
    assert "identical on all" not in by_name["weight_decay"].sentence


def test_paired_init_gives_batch_norm_the_same_linear_weights(tiny_idx: IdxData, tmp_path) -> None:
    config = SweepConfig.model_validate(idx_sweep(tiny_idx, tmp_path))
    from regsweep.data.splits import load_splits

    splits = load_splits(config.data, config.study.seed)
    plain = paired_model(config, splits, Regularization(), seed=7)
    after_plain = torch.rand(3)
    normed = paired_model(config, splits, Regularization(batch_norm=True, dropout=0.5), seed=7)
    after_normed = torch.rand(3)
    linears = [[m for m in net if isinstance(m, torch.nn.Linear)] for net in (plain, normed)]
    for a, b in zip(*linears, strict=True):
        assert torch.equal(a.weight, b.weight)
    # The dropout masks' generator stands at the same place for both.
    assert torch.equal(after_plain, after_normed)
    # Without pairing, batch norm's missing biases shift the second layer's draw.
    torch.manual_seed(7)
    unpaired = build_model(config, splits, Regularization(batch_norm=True))
    second = [m for m in unpaired if isinstance(m, torch.nn.Linear)][1]
    assert not torch.equal(second.weight, linears[0][1].weight)


def test_packed_paired_retrains_equal_one_model_at_a_time(tiny_idx: IdxData, tmp_path) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(idx_sweep(tiny_idx, tmp_path, train={"max_epochs": 5}))
    best = {"dropout": 0.2, "weight_decay": 1e-4, "l1": 1e-5, "batch_norm": True, "patience": 2}
    jobs = [
        ("best", best),
        ("no_batch_norm", {**best, "batch_norm": False}),
        ("none", {**OFF, "patience": 5}),
    ]
    packed = run_retrains(config, jobs, [11, 12], workers=1, engine="packed")
    solo = run_retrains(config, jobs, [11, 12], workers=1, engine="solo")
    for key, _ in jobs:
        assert [r["seed"] for r in packed[key]] == [11, 12]
        for p, s in zip(packed[key], solo[key], strict=True):
            assert p["epochs_run"] == s["epochs_run"] and p["weights"] == s["weights"]
            for metric in ("val_loss", "test_loss", "train_loss", "gap"):
                assert p[metric] == pytest.approx(s[metric], rel=1e-4, abs=1e-6), (key, metric)
            assert p["val_loss_curve"] == pytest.approx(s["val_loss_curve"], rel=1e-4)
    assert packed["none"][0]["weights"] == "last epoch"


def test_dose_response_grids_include_off_and_go_past_the_searched_range() -> None:
    from regsweep.config.schema import ParamSpec

    log = ParamSpec(low=1e-6, high=1e-3, log=True)
    assert grid("weight_decay", log, 20) == [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    assert grid("dropout", log, 20)[0] == 0.0 and grid("dropout", log, 20)[-1] == 0.6
    assert grid("batch_norm", log, 20) == [False, True]
    assert grid("patience", log, 20) == [1, 2, 4, 8, 16, 20]  # 20 = early stopping off


def test_ablation_without_a_test_split_measures_validation_only(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(
        idx_sweep(tiny_idx, tmp_path, with_test=False, train={"max_epochs": 2})
    )
    study = open_study(config, optuna.storages.InMemoryStorage())
    params = {"dropout": 0.2, "weight_decay": 1e-4, "l1": 1e-6, "batch_norm": True, "patience": 2}
    study.enqueue_trial(params)
    trial = study.ask()
    for name, value in params.items():
        trial.suggest_categorical(name, [value])
    study.tell(trial, 1.0)
    seen: list[str] = []
    result = run_ablation(study, n_seeds=1, workers=1, on_run=lambda v, r: seen.append(v.key))
    assert result["has_test"] is False
    assert study.user_attrs[ABLATION_ATTR]["trial"] == 0
    # patience 2 of max_epochs 2 is already off: "no early stopping" reuses best's run.
    assert "no_patience" not in seen and len(seen) == 6
    for row in result["rows"]:
        assert row["mean"]["test_loss"] is None and row["mean"]["val_loss"] > 0
    assert next(r for r in result["rows"] if r["key"] == "no_patience")["same_as"] == "best"


def test_ablation_measures_a_run_without_early_stopping_on_its_last_epoch(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(idx_sweep(tiny_idx, tmp_path, train={"max_epochs": 6}))
    params = {"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "batch_norm": False}
    with_stopping = retrain(config.model_dump_json(), {**params, "patience": 1}, seed=5)
    without = retrain(config.model_dump_json(), {**params, "patience": 6}, seed=5)
    assert with_stopping["weights"] == "best epoch"
    assert with_stopping["val_loss"] == min(with_stopping["val_loss_curve"])
    assert without["weights"] == "last epoch" and without["epochs_run"] == 6
    assert without["val_loss"] == without["val_loss_curve"][-1]
    # The same seed trains the same path until early stopping would have ended it.
    n = with_stopping["epochs_run"]
    assert without["val_loss_curve"][:n] == with_stopping["val_loss_curve"]


def test_gap_compares_with_the_studys_own_unregularized_trial() -> None:
    html = build_report(synthetic_study(with_plain_trial=True))
    assert "best trial without regularization #3" in html
    assert "has no trial without any regularization" not in html


def test_gap_says_clearly_when_no_trial_is_unregularized() -> None:
    html = build_report(synthetic_study(with_plain_trial=False))
    assert "This study has no trial without any regularization" in html
    assert "regsweep ablate" in html
    assert "Not run yet" in html  # the ablation section
    # Fixed single-valued regularizers have no importance and are named as such.
    assert "so it has no importance: weight_decay=0" in html


def test_report_refuses_a_study_not_made_by_regsweep() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(params={}, distributions={}, value=1.0))
    with pytest.raises(Exception, match="not created by `regsweep launch`"):
        build_report(study)


def test_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        prepare_file(blocker / "report.html", "-o")
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_dir(blocker, "-o")
    with pytest.raises(ConfigError, match="is a folder"):
        prepare_file(tmp_path, "-o")
    assert prepare_dir(tmp_path / "new" / "dir", "-o").is_dir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        prepare_file(fifo, "-o")


def test_an_output_given_as_a_symlink_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "real.html"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "report.html"
    link.symlink_to(target)
    write_atomic(prepare_file(link, "-o"), lambda tmp: tmp.write_text("new"))
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.html"]  # no temp left
