"""report, ablate and export through the real CLI, on a real sweep over real MNIST images.

One small sweep (3,000 MNIST images, 15 epochs, 8 trials) is shared by every test in
this module. The network is wide for so little data, so training without
regularization overfits: a real effect the ablation must find.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
import yaml
from scipy import stats

import regsweep
from regsweep.config.loading import load_sweep
from regsweep.config.schema import REGULARIZERS
from regsweep.data.idx import read_idx, write_idx
from regsweep.data.splits import load_splits
from regsweep.engine.fit import evaluate
from regsweep.insight.ablation import ABLATION_TABLE_ATTR, effects_of, stored_ablation
from regsweep.insight.dashboard import artifact_folder
from regsweep.insight.export import export_best
from regsweep.insight.paths import stored_paths
from regsweep.insight.verdict import findings
from regsweep.storage.rdb import build_storage
from regsweep.sweep.study import open_study
from tests.browser import full_page_screenshot, headless_chromium
from tests.conftest import IdxData, idx_sweep, run_cli, run_cli_here

# One torch thread per process: on a shared 2-core machine more threads only contend.
ENV = {"OMP_NUM_THREADS": "1"}
SECTIONS = (
    "verdict",
    "effects",
    "why",
    "paths",
    "summary",
    "history",
    "importances",
    "parallel",
    "slices",
    "learning-curves",
    "generalization-gap",
    "sparsity",
    "batch-norm",
    "patience",
)


@dataclass(frozen=True)
class Sweep:
    path: Path
    storage: str
    folder: Path

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name="insight", storage=self.storage)


def split_t10k(mnist: IdxData, folder: Path) -> IdxData:
    """The first 8,000 t10k images to train and validate on, the last 2,000 held out."""
    images, labels = read_idx(mnist.train_images), read_idx(mnist.train_labels)
    folder.mkdir(parents=True, exist_ok=True)
    data = IdxData(*(folder / f"{n}.idx.gz" for n in ("tx", "ty", "sx", "sy")))
    write_idx(data.train_images, images[:8000])
    write_idx(data.train_labels, labels[:8000])
    write_idx(data.test_images, images[8000:])
    write_idx(data.test_labels, labels[8000:])
    return data


def sweep_dict(data: IdxData, folder: Path) -> dict[str, Any]:
    raw = idx_sweep(
        data,
        folder,
        study={
            "name": "insight",
            "n_trials": 8,
            "sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
            "pruner": {"name": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 3}},
        },
        model={"hidden": [256, 128]},
        train={"max_epochs": 15, "batch_size": 128, "lr": 0.002},
    )
    raw["data"]["limit"] = 3000  # (idx_sweep's own `data` argument is the IDX files)
    # Every trial regularizes: the ablation's retrain supplies the unregularized run.
    raw["search_space"] = {
        "dropout": {"low": 0.1, "high": 0.5},
        "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
        "l1": {"low": 1e-7, "high": 1e-5, "log": True},
        "batch_norm": {"choices": [False, True]},
        "patience": {"low": 2, "high": 6},
    }
    return raw


@pytest.fixture(scope="module")
def sweep(mnist_t10k: IdxData, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    folder = tmp_path_factory.mktemp("insight")
    data = split_t10k(mnist_t10k, folder / "data")
    raw = sweep_dict(data, folder)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = run_cli("launch", path, env=ENV)
    assert result.code == 0, result.stderr
    return Sweep(path, raw["study"]["storage"], folder)


@pytest.fixture(scope="module")
def ablated(sweep: Sweep) -> tuple[Sweep, str]:
    """The documented sequence after the sweep: ablate, then paths (report in the tests)."""
    result = run_cli("ablate", sweep.path, "--max-repeats", "10", "--workers", "2", env=ENV)
    assert result.code == 0, result.stderr
    assert "look 1 of 2 (5 repetitions)" in result.stderr, result.stderr
    paths = run_cli("paths", sweep.path, "--repeats", "3", "--workers", "2", env=ENV)
    assert paths.code == 0, paths.stderr
    return sweep, result.stdout


def test_ablation_rows_repetitions_and_the_no_regularization_finding(ablated) -> None:
    sweep, stdout = ablated
    study = sweep.study()
    result = stored_ablation(study)
    assert result is not None and result["design"] == "repetitions"
    assert result["trial"] == study.best_trial.number
    n = len(result["repetitions"])
    assert n in (5, 10) and len(set(result["seeds"])) == n
    keys = [row["key"] for row in result["rows"]]
    assert keys == ["best", *(f"no_{n}" for n in REGULARIZERS), "none"]
    best_row, none_row = result["rows"][0], result["rows"][-1]
    # Each repetition assessed a fifth of the 2,250 images the sweep trained on (never its
    # 750 validation images, which chose the config), and trained and stopped on the rest.
    for run in best_row["runs"]:
        assert run["n_assess"] == 450 and run["n_fit"] + run["n_val"] == 2550
    ratio = 450 / 2550
    effects = effects_of(result)
    for row in result["rows"]:
        assert [run["repetition"] for run in row["runs"]] == list(range(n))
        for metric in ("assess_loss", "assess_accuracy", "val_loss"):
            values = [run[metric] for run in row["runs"]]
            assert row["mean"][metric] == pytest.approx(np.mean(values))
            if row["key"] == "best":
                continue
            # The corrected resampled t on the paired per-repetition differences.
            diffs = np.array(values) - [run[metric] for run in best_row["runs"]]
            effect = effects[row["key"]][metric]
            assert effect.mean == pytest.approx(diffs.mean())
            if diffs.std() > 0:
                half = stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) * np.sqrt(1 / n + ratio)
                assert effect.low == pytest.approx(diffs.mean() - half, rel=1e-4, abs=1e-9)
        removed = row["key"].removeprefix("no_")
        if removed in REGULARIZERS:
            off = {"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "batch_norm": False}
            expected = off.get(removed, 15)  # patience off: >= max_epochs
            assert row["params"][removed] == expected
    assert none_row["params"] == {
        "dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "batch_norm": False, "patience": 15
    }  # fmt: skip
    # The finding: without any regularization the wide network overfits 1,800 images,
    # on the assessment rows and on the held-out test images alike.
    assert none_row["mean"]["assess_loss"] > best_row["mean"]["assess_loss"]
    assert result["test_check"]["none"]["test_loss"]["low"] > 0  # the independent check
    # At most 10 repetitions (to keep the test short) may leave it undecided, with the
    # number of repetitions that would decide it; it is never decided the wrong way.
    assert result["verdicts"]["all"]["decision"] in ("helps", "undecided")
    # Every regularizer ends decided, or undecided with its reason.
    sentences = {f.name: f.sentence for f in findings(result)}
    for name in result["tested"]:
        decision = result["verdicts"][name]["decision"]
        assert decision in ("helps", "hurts", "negligible", "undecided")
        if decision == "undecided":
            assert "would decide it" in sentences[name], sentences[name]
    # Stored for the dashboard too, printed verdict first, then as a table.
    assert len(study.user_attrs[ABLATION_TABLE_ATTR]) == 1 + len(keys)
    assert stdout.startswith("verdict")
    assert "All regularization" in stdout and "without it assessment loss" in stdout
    assert "adjusted 95% CI" in stdout and "why:" in stdout and "test rows" in stdout
    assert "corrected resampled t" in stdout and "Holm" in stdout
    assert "no regularization" in stdout
    from optuna_dashboard._note import get_note_from_system_attrs

    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    note = get_note_from_system_attrs(system_attrs, None)["body"]
    assert note.startswith("## regsweep verdict: insight") and "adjusted 95% CI" in note
    # The dose-response paths: every varied regularizer, "off" on each path, over the
    # ablation's first three repetitions (the same rows and seeds).
    paths = stored_paths(study)
    assert paths is not None and set(paths["paths"]) == set(REGULARIZERS)
    assert paths["seeds"] == result["seeds"][:3]
    assert paths["runs"]["best"][0]["split"] == best_row["runs"][0]["split"]
    for points in paths["paths"].values():
        assert points[0]["label"] == "off" or points[0]["label"] == "1"
        assert sum(p["is_best"] for p in points) == 1


def test_report_renders_every_section_in_chromium(ablated, tmp_path: Path) -> None:
    sweep, _ = ablated
    report = tmp_path / "report.html"
    # Storage and study name alone: the config stored with the study does the rest.
    result = run_cli("report", "--storage", sweep.storage, "--study", "insight", "-o", report)
    assert result.code == 0, result.stderr
    text = report.read_text(encoding="utf-8")
    assert "<script src=" not in text, "the report must open offline"
    assert text.count("Plotly.newPlot") >= 19
    assert "PedAnovaImportanceEvaluator" in text
    assert "has no trial without any regularization" in text
    # Verdict first: before the study summary and every standard plot.
    assert text.index('id="verdict"') < text.index('id="summary"') < text.index('id="history"')
    assert artifact_folder(sweep.storage) is not None

    with headless_chromium() as driver:
        driver.get(report.as_uri())
        driver.implicitly_wait(10)
        driver.find_element("css selector", "#fig-effects .main-svg")
        box = driver.find_element("id", "verdict-box")
        findings = box.find_elements("css selector", "li.finding")
        box_text = box.text
        effect = driver.execute_script(
            "const d = document.getElementById('fig-effects'); const t = d.data[0];"
            " return {n: t.x.length, whiskers: t.error_x.array.length,"
            " zero: d.layout.shapes.some(s => s.x0 === 0 && s.x1 === 0),"
            " bars: d.querySelectorAll('.errorbar').length,"
            " top: document.getElementById('verdict').getBoundingClientRect().top}"
        )
        found = driver.execute_script(
            "return arguments[0].map(id => { const s = document.getElementById(id);"
            " return s ? s.innerText.trim().length : -1; })",
            list(SECTIONS),
        )
        plots = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({"
            " id: d.id, svg: d.querySelectorAll('.main-svg').length,"
            " traces: (d.data || []).length,"
            " marks: d.querySelectorAll('.trace, .bars, .point, path.js-line').length,"
            " height: d.getBoundingClientRect().height }))"
        )
        pruned_marked = driver.execute_script(
            "return document.getElementById('fig-learning-curves').data"
            ".some(t => t.name === 'pruned here' && t.x.length > 0)"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        shot = full_page_screenshot(driver, tmp_path / "report.png")

    assert dict(zip(SECTIONS, found, strict=True)) == {
        s: n for s, n in zip(SECTIONS, found, strict=True) if n > 0
    }, f"missing or empty sections: {found}"
    assert len(findings) == 6 and "why:" in box_text and "95% CI" in box_text
    assert effect["n"] >= 5 and effect["whiskers"] == effect["n"] and effect["zero"]
    assert effect["bars"] >= effect["n"] and effect["top"] < 200
    ids = {p["id"] for p in plots}
    expected = {f"fig-{s}" for s in SECTIONS if s not in ("summary", "slices", "verdict",
                                                             "why", "paths")}  # fmt: skip
    expected |= {f"fig-slices-{n}" for n in REGULARIZERS}
    expected |= {f"fig-paths-{n}" for n in REGULARIZERS}
    assert expected <= ids, expected - ids
    for plot in plots:
        assert plot["svg"] > 0 and plot["traces"] > 0 and plot["marks"] > 0, plot
        assert plot["height"] > 200, plot
    assert pruned_marked
    assert errors == []
    assert shot.stat().st_size > 50_000


def test_export_reloads_and_reproduces_its_test_accuracy(sweep: Sweep, tmp_path: Path) -> None:
    out = tmp_path / "best"
    result = run_cli("export", sweep.path, "-o", out, env=ENV)
    assert result.code == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    study = sweep.study()
    assert metrics["trial"] == study.best_trial.number
    assert metrics["seed"] == study.best_trial.user_attrs["seed"]
    # Same config, same seed, same thread count: the retrain is the best trial again.
    assert metrics["validation"]["loss"] == pytest.approx(study.best_value, rel=1e-6)
    assert set(metrics["versions"]) >= {"regsweep", "torch", "optuna"}

    model = regsweep.load_model(out)
    assert not model.training
    config = load_sweep(out / "config.yaml")
    assert config.search_space.fixed_params() == metrics["params"]
    splits = load_splits(config.data, config.study.seed)
    assert metrics["data"]["fingerprint"] == splits.fingerprint()
    assert splits.test_x is not None and splits.test_y is not None
    test_loss, test_accuracy = evaluate(model, splits.test_x, splits.test_y)
    assert test_accuracy == metrics["test"]["accuracy"]
    assert test_loss == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    assert metrics["test"]["accuracy"] > 0.85  # a real model, not chance (10%)


def test_export_full_trains_on_train_and_validation(sweep: Sweep, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    metrics = export_best(sweep.study(), tmp_path / "full", full=True)
    best = sweep.study().best_trial
    assert metrics["trained_on"] == "train+validation"
    assert metrics["epochs_run"] == best.user_attrs["best_epoch"]
    assert "note" in metrics["validation"]
    assert regsweep.load_model(tmp_path / "full")(torch.zeros(2, 784)).shape == (2, 10)


# Bad input -------------------------------------------------------------------------------


def assert_one_line_error(result: Any, *needles: str) -> None:
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def unfinished(tiny_idx: IdxData, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A regsweep study (config stored) whose only trial was pruned."""
    folder = tmp_path_factory.mktemp("unfinished")
    config = load_sweep_dict(idx_sweep(tiny_idx, folder, study={"name": "unfinished"}), folder)
    storage = build_storage(config.study.storage, heartbeat=None)
    study = open_study(config, storage)
    trial = study.ask()
    for name in REGULARIZERS:
        trial.suggest_categorical(name, [0.0 if name != "batch_norm" else False])
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return config.study.storage


def load_sweep_dict(raw: dict[str, Any], folder: Path) -> regsweep.SweepConfig:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_sweep(path)


@pytest.mark.parametrize("command", ["report", "ablate", "export"])
def test_study_without_finished_trials_is_one_line(unfinished: str, command: str, tmp_path) -> None:
    output = [] if command == "ablate" else ["-o", tmp_path / "out"]
    result = run_cli_here(command, "--storage", unfinished, *output, env=ENV)
    assert_one_line_error(result, "no completed trial", "1 pruned")
    assert not (tmp_path / "out").exists()


def test_unknown_study_is_one_line(unfinished: str, tmp_path: Path) -> None:
    result = run_cli_here(
        "report", "--storage", unfinished, "--study", "nope", "-o", tmp_path / "r.html"
    )
    assert_one_line_error(result, "no study named 'nope'", "unfinished")


def test_unwritable_outputs_are_one_line_and_write_nothing(sweep: Sweep, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    report = run_cli_here("report", sweep.path, "-o", blocker / "report.html")
    assert_one_line_error(report, "-o", "cannot write")
    export = run_cli_here("export", sweep.path, "-o", blocker)
    assert_one_line_error(export, "-o", "not a folder")
    assert blocker.read_text() == "not a folder"


def test_export_without_a_test_split_writes_validation_metrics(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    config = load_sweep_dict(
        idx_sweep(tiny_idx, tmp_path, with_test=False, study={"name": "notest"}), tmp_path
    )
    study = open_study(config, build_storage(config.study.storage, heartbeat=None))
    trial = study.ask()
    for name in REGULARIZERS:
        off = {"batch_norm": False, "patience": 4}
        trial.suggest_categorical(name, [off.get(name, 0.0)])
    study.tell(trial, 1.0)
    result = run_cli("export", "--storage", config.study.storage, "-o", tmp_path / "out")
    assert result.code == 0, result.stderr
    assert "no test split, so test metrics are absent" in result.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["test"] is None and metrics["validation"]["loss"] > 0
    assert regsweep.load_model(tmp_path / "out")(torch.zeros(2, 64)).shape == (2, 10)
