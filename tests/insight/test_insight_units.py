"""Ablation statistics, report sections and output checks on small real objects, no training
except one tiny ablation on generated data."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS, SweepConfig, VerdictConfig
from regsweep.engine.recipe import build_model, paired_model
from regsweep.errors import ConfigError
from regsweep.insight.ablation import (
    ABLATION_ATTR,
    METRICS,
    effects_of,
    findings_to_test,
    headline_effects,
    run_ablation,
    stored_ablation,
    summarize,
    variants,
)
from regsweep.insight.decisions import LookPlan, Sequential
from regsweep.insight.outputs import prepare_dir, prepare_file, write_atomic
from regsweep.insight.paths import grid
from regsweep.insight.report import build_report
from regsweep.insight.retrain import retrain_pack, retrain_solo, run_retrains
from regsweep.insight.studyview import effective, is_unregularized
from regsweep.insight.verdict import epochs_line, findings, verdict_markdown
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


def synthetic_study(with_plain_trial: bool, name: str | None = None) -> optuna.Study:
    study = optuna.create_study(study_name=name)
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
    """Scripted runs of one variant, one per repetition, as retrain reports them."""
    return [
        {"repetition": i, "seed": 100 + i, "n_fit": 64, "n_val": 16, "n_assess": 20,
         "assess_loss": v, "assess_accuracy": 1 - v, "val_loss": v, "val_accuracy": 1 - v,
         "test_loss": v, "test_accuracy": 1 - v, "gap": gap, "best_epoch": 4, "epochs_run": 6,
         "weight_sparsity": 0.01, "train_loss_curve": [v + 1, v], "val_loss_curve": [v + 1, v]}
        for i, v in enumerate(values)
    ]  # fmt: skip


def scripted(
    per_key: dict[str, list[float]], best: dict[str, Any], min_effect: float = 0.01
) -> dict[str, Any]:
    """An ablation result from scripted per-repetition assessment losses, decided in one
    look as ``ablate --repeats K`` decides it."""
    rows = variants(best, MAX_EPOCHS)
    unique: dict[Any, Any] = {}
    for row in rows:
        unique.setdefault(effective(row.params, MAX_EPOCHS), row.key)
    same_as = {r.key: unique[effective(r.params, MAX_EPOCHS)] for r in rows
               if unique[effective(r.params, MAX_EPOCHS)] != r.key}  # fmt: skip
    result = summarize(
        rows=rows,
        runs_of={e: runs(per_key[k], gap=0.3 if k == "none" else 0.1) for e, k in unique.items()},
        same_as=same_as,
        max_epochs=MAX_EPOCHS,
    )
    n = len(per_key["best"])
    tested = findings_to_test(same_as)
    rule = Sequential(LookPlan.fixed(n), tested, min_effect)
    rule.look(headline_effects({**result, "headline": "assess_loss"}, tested), n)
    result.update(
        design="repetitions", headline="assess_loss", trial=0, seeds=[100 + i for i in range(n)],
        repetitions=list(range(n)), folds=5, min_effect=min_effect, min_effect_spec=min_effect,
        mode="fixed", looks=rule.looks, planned_looks=[n], tested=tested,
        verdicts=rule.verdicts(), max_epochs=MAX_EPOCHS, created="now", has_test=False,
        engine="packed",
    )  # fmt: skip
    return result


BEST = {"dropout": 0.3, "weight_decay": 1e-3, "l1": 0.0, "batch_norm": False, "patience": 3}
# n_assess / (n_fit + n_val) of the scripted runs: the correction's ratio.
RATIO = 20 / 80


def test_verdict_decides_and_orders_from_scripted_repetitions() -> None:
    result = scripted(
        {
            "best": [0.20, 0.21, 0.22, 0.20, 0.21],
            "no_dropout": [0.40, 0.41, 0.42, 0.40, 0.41],  # helps: +0.2 on every repetition
            "no_weight_decay": [0.215, 0.205, 0.235, 0.19, 0.22],  # across 0: undecided
            "no_batch_norm": [0.2, 0.21, 0.22, 0.2, 0.21],  # batch norm was off: the same
            "no_patience": [0.10, 0.11, 0.12, 0.10, 0.11],  # hurts: -0.1 on every repetition
            "none": [0.60, 0.61, 0.62, 0.60, 0.61],
        },
        BEST,
    )
    effect = effects_of(result)["no_dropout"]["assess_loss"]
    assert effect.mean == pytest.approx(0.2) and effect.ratio == pytest.approx(RATIO)
    found = findings(result)
    assert [f.name for f in found] == ["all", "dropout", "patience", "weight_decay",
                                       "l1", "batch_norm"]  # fmt: skip
    by_name = {f.name: f for f in found}
    assert by_name["dropout"].verdict == "helps"
    assert "helps: without it assessment loss is 0.2000 higher" in by_name["dropout"].sentence
    assert "adjusted 95% CI" in by_name["dropout"].sentence
    assert "5 repetitions" in by_name["dropout"].sentence
    assert by_name["patience"].verdict == "hurts"
    assert by_name["weight_decay"].verdict == "undecided"
    assert "undecided after 5 repetitions" in by_name["weight_decay"].sentence
    # Four effects were tested. Holm's first step (alpha / 4) decided three; the fourth
    # was judged alone at the next step, alpha / 1, and stayed undecided.
    assert result["tested"] == ["all", "dropout", "weight_decay", "patience"]
    assert result["verdicts"]["dropout"]["effect"]["confidence"] == pytest.approx(1 - 0.05 / 4)
    judged = result["verdicts"]["weight_decay"]
    assert judged["effect"]["confidence"] == pytest.approx(0.95)
    assert by_name["l1"].verdict is None and "off in the best config" in by_name["l1"].sentence
    assert by_name["all"].verdict == "helps"
    assert "0.1000 with all of it vs 0.3000 with none" in by_name["all"].evidence
    markdown = verdict_markdown(result, "unit")
    assert "**helps**: Dropout 0.3 helps" in markdown
    assert "corrected resampled t" in markdown and "Holm" in markdown


def test_a_tiny_effect_is_negligible_and_an_identical_one_says_so() -> None:
    result = scripted(
        {
            "best": [0.20, 0.21, 0.22, 0.20, 0.21],
            "no_dropout": [0.2005, 0.2104, 0.2206, 0.2003, 0.2105],  # +0.0005: real, tiny
            "no_weight_decay": [0.20, 0.21, 0.22, 0.20, 0.21],  # identical runs
            "no_batch_norm": [0.2, 0.21, 0.22, 0.2, 0.21],
            "no_patience": [0.2, 0.21, 0.22, 0.2, 0.21],
            "none": [0.21, 0.22, 0.23, 0.21, 0.22],
        },
        BEST,
        min_effect=0.02,
    )
    by_name = {f.name: f for f in findings(result)}
    assert by_name["dropout"].verdict == "negligible" and by_name["dropout"].real
    assert by_name["dropout"].word == "real but negligible"
    assert "inside ±0.0200, the smallest effect that matters" in by_name["dropout"].sentence
    assert "real (the interval excludes 0)" in by_name["dropout"].sentence
    assert by_name["weight_decay"].verdict == "negligible"
    assert "identical on all 5 repetitions" in by_name["weight_decay"].sentence


def test_a_best_config_still_improving_at_the_last_epoch_is_flagged() -> None:
    per_key = {"best": [0.2] * 4, "no_dropout": [0.3] * 4, "no_weight_decay": [0.2] * 4,
               "no_patience": [0.2] * 4, "none": [0.3] * 4}  # fmt: skip
    result = scripted(per_key, BEST)
    assert epochs_line(result) == ""  # best epoch 4 of 10
    for run in result["rows"][0]["runs"][:2]:
        run["best_epoch"] = MAX_EPOCHS
    line = epochs_line(result)
    assert "still improving at the last epoch in 2 of 4 runs" in line
    assert line in verdict_markdown(result, "unit")


def test_an_undecided_effect_says_how_many_more_repetitions_would_decide_it() -> None:
    noisy = [0.2, 0.23, 0.19, 0.24, 0.2]
    result = scripted(
        {"best": [0.2] * 5, "no_dropout": noisy, "no_weight_decay": [0.2] * 5,
         "no_patience": [0.2] * 5, "none": noisy},
        BEST, min_effect=0.001,
    )  # fmt: skip
    verdict = result["verdicts"]["dropout"]
    assert verdict["decision"] == "undecided"
    sentence = next(f for f in findings(result) if f.name == "dropout").sentence
    # The correction's floor (ratio 0.25) keeps this interval wider than its mean of
    # 0.012: no cap up to 1,000 repetitions decides it.
    assert verdict["more"] is None and "no cap up to 1,000 repetitions would decide it" in sentence


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
    packed = run_retrains(config, jobs, [0, 3], workers=1, engine="packed")
    solo = run_retrains(config, jobs, [0, 3], workers=1, engine="solo")
    for key, _ in jobs:
        assert [r["repetition"] for r in packed[key]] == [0, 3]
        for p, s in zip(packed[key], solo[key], strict=True):
            assert p["epochs_run"] == s["epochs_run"] and p["weights"] == s["weights"]
            for metric in ("assess_loss", "val_loss", "test_loss", "train_loss", "gap"):
                assert p[metric] == pytest.approx(s[metric], rel=1e-4, abs=1e-6), (key, metric)
            assert p["val_loss_curve"] == pytest.approx(s["val_loss_curve"], rel=1e-4)
    assert packed["none"][0]["weights"] == "last epoch"


def test_the_variants_of_a_repetition_share_rows_init_and_batch_order(
    tiny_idx: IdxData, tmp_path
) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(idx_sweep(tiny_idx, tmp_path, train={"max_epochs": 2}))
    best = {"dropout": 0.3, "weight_decay": 1e-3, "l1": 1e-5, "batch_norm": True, "patience": 1}
    jobs = [(v.key, v.params) for v in variants(best, 2)]
    assert len(jobs) == 7  # the best config, each of five removed, and none
    reps = [retrain_pack(config.model_dump_json(), jobs, r) for r in (0, 1)]
    for runs_of in reps:
        assert set(runs_of) == {key for key, _ in jobs}
        # One split (fit, validation and assessment rows), one set of initial Linear
        # weights, one seed for the batch order and the dropout streams: all seven alike.
        for field in ("split", "init", "seed", "n_fit", "n_val", "n_assess"):
            assert len({run[field] for run in runs_of.values()}) == 1, field
        # Every variant of a pack trains on the pack's one permutation per epoch, which its
        # seed draws; a solo retrain with the same seed trains the same batches
        # (test_packed_paired_retrains_equal_one_model_at_a_time).
    for field in ("split", "init", "seed"):
        assert reps[0]["best"][field] != reps[1]["best"][field], field
    solo = retrain_solo(config.model_dump_json(), best, 1)
    assert (solo["split"], solo["init"], solo["seed"]) == (
        reps[1]["best"]["split"], reps[1]["best"]["init"], reps[1]["best"]["seed"]
    )  # fmt: skip


def test_dose_response_grids_include_off_and_go_past_the_searched_range() -> None:
    from regsweep.config.schema import ParamSpec

    log = ParamSpec(low=1e-6, high=1e-3, log=True)
    assert grid("weight_decay", log, 20) == [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    assert grid("dropout", log, 20)[0] == 0.0 and grid("dropout", log, 20)[-1] == 0.6
    assert grid("batch_norm", log, 20) == [False, True]
    assert grid("patience", log, 20) == [1, 2, 4, 8, 16, 20]  # 20 = early stopping off


def _one_trial_study(config: SweepConfig, params: dict[str, Any]) -> optuna.Study:
    study = open_study(config, optuna.storages.InMemoryStorage())
    study.enqueue_trial(params)
    trial = study.ask()
    for name, value in params.items():
        trial.suggest_categorical(name, [value])
    study.tell(trial, 1.0)
    return study


def test_ablation_without_a_test_split_has_no_test_check(tiny_idx: IdxData, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(
        idx_sweep(tiny_idx, tmp_path, with_test=False, train={"max_epochs": 2})
    )
    params = {"dropout": 0.2, "weight_decay": 1e-4, "l1": 1e-6, "batch_norm": True, "patience": 2}
    study = _one_trial_study(config, params)
    seen: list[str] = []
    result = run_ablation(study, repeats=2, workers=1, on_run=lambda v, r: seen.append(v.key))
    assert result["has_test"] is False and result["test_check"] == {}
    assert study.user_attrs[ABLATION_ATTR]["trial"] == 0
    # patience 2 of max_epochs 2 is already off: "no early stopping" reuses best's run.
    assert "no_patience" not in seen and len(seen) == 6 * 2
    for row in result["rows"]:
        assert row["mean"]["test_loss"] is None and row["mean"]["assess_loss"] > 0
    assert next(r for r in result["rows"] if r["key"] == "no_patience")["same_as"] == "best"
    assert "patience" not in result["tested"] and len(result["verdicts"]) == 5


def test_ablation_looks_until_decided_and_stores_every_look(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(idx_sweep(tiny_idx, tmp_path, train={"max_epochs": 3}))
    params = {"dropout": 0.1, "weight_decay": 1e-4, "l1": 1e-6, "batch_norm": True, "patience": 1}
    study = _one_trial_study(config, params)
    looks = []
    verdict = VerdictConfig(min_effect=0.05, max_repeats=6, folds=3)
    result = run_ablation(study, verdict=verdict, workers=1, on_look=looks.append)
    # Looks after every round of 3 repetitions, at most 6: one or two looks.
    assert [look.repetitions for look in looks] == [3, 6][: len(looks)]
    assert looks[-1].final and looks[-1].stopped in ("decided", "cap", "futile")
    assert result["planned_looks"] == [3, 6] and len(result["looks"]) == len(looks)
    assert len(result["seeds"]) == looks[-1].repetitions
    assert result["min_effect"] == pytest.approx(0.05) and result["folds"] == 3
    for name in result["tested"]:
        stored = result["verdicts"][name]
        assert stored["decision"] in ("helps", "hurts", "negligible", "undecided")
        if stored["decision"] == "undecided":
            assert "more" in stored
    # Every run was scored on its repetition's assessment rows: a third of the 450 rows
    # the sweep trained on (its 150 validation rows chose the config: never assessed).
    best_runs = result["rows"][0]["runs"]
    assert {run["n_assess"] for run in best_runs} == {150}
    assert result["test_check"]["none"]["test_loss"]["n"] == 200  # the test rows
    # The check is the per-row mean difference, which equals the difference of the means.
    none = next(r for r in result["rows"] if r["key"] == "none")
    diff = none["mean"]["test_loss"] - result["rows"][0]["mean"]["test_loss"]
    assert result["test_check"]["none"]["test_loss"]["mean"] == pytest.approx(diff, rel=1e-5)


def test_ablation_measures_a_run_without_early_stopping_on_its_last_epoch(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    config = SweepConfig.model_validate(idx_sweep(tiny_idx, tmp_path, train={"max_epochs": 6}))
    params = {"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "batch_norm": False}
    with_stopping = retrain_solo(config.model_dump_json(), {**params, "patience": 1}, 5)
    without = retrain_solo(config.model_dump_json(), {**params, "patience": 6}, 5)
    assert with_stopping["weights"] == "best epoch"
    # Measured at the epoch its validation rows chose, and scored on other rows.
    assert with_stopping["val_loss"] == pytest.approx(min(with_stopping["val_loss_curve"]))
    assert with_stopping["assess_loss"] != with_stopping["val_loss"]
    assert without["weights"] == "last epoch" and without["epochs_run"] == 6
    assert without["val_loss"] == pytest.approx(without["val_loss_curve"][-1])
    # The same repetition trains the same path until early stopping would have ended it.
    n = with_stopping["epochs_run"]
    assert without["val_loss_curve"][:n] == with_stopping["val_loss_curve"]


def test_an_ablation_stored_in_the_old_form_still_reports_with_a_note() -> None:
    study = synthetic_study(with_plain_trial=False)
    old_runs = [
        {"seed": s, "val_loss": v, "val_accuracy": 0.9, "test_loss": v, "test_accuracy": 0.9,
         "gap": 0.1, "best_epoch": 3, "epochs_run": 5, "weight_sparsity": 0.01,
         "weights": "best epoch", "diverged": False, "train_loss": v / 2}
        for s, v in ((1, 0.3), (2, 0.31), (3, 0.29))
    ]  # fmt: skip
    rows = []
    for variant in variants(BEST, MAX_EPOCHS):
        shift = {"no_dropout": 0.1, "none": 0.2}.get(variant.key, 0.0)
        runs_ = [{**run, "val_loss": run["val_loss"] + shift} for run in old_runs]
        rows.append({
            "key": variant.key, "label": variant.label, "params": variant.params,
            "same_as": "best" if variant.key == "no_l1" else None, "runs": runs_,
            "curves": [{"train_loss": [0.5, 0.4], "val_loss": [0.6, 0.5]}] * 3,
            "mean": {m: statistics.fmean(r[m] for r in runs_) for m in METRICS},
        })  # fmt: skip
    study.set_user_attr(
        ABLATION_ATTR,
        {"metrics": list(METRICS), "rows": rows, "curves": {}, "trial": 0, "best_value": 0.3,
         "seeds": [1, 2, 3], "has_test": True, "max_epochs": MAX_EPOCHS, "engine": "packed",
         "created": "2026-11-01T00:00:00+00:00"},
    )  # fmt: skip
    result = stored_ablation(study)
    assert result is not None and result["design"] == "seeds"
    by_name = {f.name: f for f in findings(result)}
    assert by_name["dropout"].verdict == "helps" and "3 paired seeds" in by_name["dropout"].sentence
    assert "validation loss" in by_name["dropout"].sentence
    html = build_report(study)
    assert "This verdict came from the older design" in html
    assert 'id="verdict-box"' in html


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


def test_the_report_escapes_what_users_name() -> None:
    # A study name (or a column, a fail reason) is text, never markup: the templates
    # autoescape, and only Plotly's own figures are marked safe.
    html = build_report(synthetic_study(False, name='<script>alert("x")</script>'))
    assert '<script>alert("x")</script>' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert html.count("<script") == html.count("</script>")  # Plotly's, balanced


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


def test_the_test_row_check_by_hand() -> None:
    from regsweep.insight.ablation import _test_check

    # Three test rows, two repetitions; "none" did not train in repetition 1 (diverged),
    # so only repetition 0 pairs. Per row, loss differences 0.5 - 0.2, 0.4 - 0.3, 0.9 -
    # 0.4 = 0.3, 0.1, 0.5: mean 0.3, sd 0.2, t(0.975, 2) = 4.302653 (printed tables), so
    # 0.3 ± 4.302653 · 0.2 / sqrt(3) = 0.3 ± 0.49683.
    best = {
        0: {"loss": [0.2, 0.3, 0.4], "correct": [1.0, 1.0, 0.0]},
        1: {"loss": [0.1, 0.1, 0.1], "correct": [1.0, 1.0, 1.0]},
    }
    none = {0: {"loss": [0.5, 0.4, 0.9], "correct": [1.0, 0.0, 0.0]}}
    dropout = {0: best[0], 1: best[1]}  # the same as the best config: left out
    check = _test_check(
        {"best": best, "none": none, "dropout": dropout, "l1": best},
        {"dropout": "best", "patience": "none"},
    )
    assert set(check) == {"none", "patience", "l1"}  # patience's twin is none's check
    loss = check["none"]["test_loss"]
    assert (loss["n"], loss["runs"]) == (3, 1)
    assert loss["mean"] == pytest.approx(0.3)
    assert loss["low"] == pytest.approx(0.3 - 0.49683, abs=1e-5)
    assert loss["high"] == pytest.approx(0.3 + 0.49683, abs=1e-5)
    # Correctness: 0, -1, 0 per row: mean -1/3, sd 0.57735, half-width 1.43422.
    correct = check["none"]["test_accuracy"]
    assert correct["mean"] == pytest.approx(-1 / 3)
    assert correct["high"] - correct["mean"] == pytest.approx(1.43422, abs=1e-5)
    assert check["patience"] == check["none"]
    # A variant identical to the best on every paired row: no spread, interval at 0.
    assert check["l1"]["test_loss"]["mean"] == 0 and check["l1"]["test_loss"]["runs"] == 2
