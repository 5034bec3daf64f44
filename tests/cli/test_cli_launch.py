"""The real CLI end to end on real SQLite and a tiny generated IDX data set.

One study is launched once per module (``launched``) and read by several tests; the tests
that change a study work on their own copy or their own database.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from regsweep.config.schema import REGULARIZERS
from regsweep.sweep.study import _difference
from tests.conftest import CliResult, IdxData, idx_sweep, run_cli, run_cli_here
from tests.processes import reaped, regsweep, start, wait_until

N_TRIALS = 6
USER_ATTRS = {
    "train_loss",
    "val_loss",
    "val_accuracy",
    "best_epoch",
    "epochs_run",
    "stopped_early",
    "epoch_seconds",
    "weight_sparsity",
}
# Prunes as soon as a trial is worse than the median after one epoch, from the second trial.
AGGRESSIVE_PRUNER = {"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 0}}


@dataclass(frozen=True)
class Launched:
    folder: Path
    sweep: Path
    db: Path
    result: CliResult

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name="tiny", storage=self.url)


def sweep_file(data: IdxData, folder: Path, **sections: dict) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(idx_sweep(data, folder, **sections), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def launched(tiny_idx: IdxData, tmp_path_factory: pytest.TempPathFactory) -> Launched:
    folder = tmp_path_factory.mktemp("launched")
    sweep = sweep_file(tiny_idx, folder, study={"n_trials": N_TRIALS, "pruner": AGGRESSIVE_PRUNER})
    result = run_cli("launch", sweep, cwd=folder)
    assert result.code == 0, result.stderr
    return Launched(folder, sweep, folder / "study.db", result)


def copy_db(launched: Launched, folder: Path) -> str:
    """A private copy of the launched database (after its writer has exited)."""
    target = folder / "copy.db"
    shutil.copy(launched.db, target)
    return f"sqlite:///{target}"


def test_launch_records_every_trial_with_params_curves_and_attrs(launched: Launched) -> None:
    trials = launched.study().trials
    assert len(trials) == N_TRIALS
    for trial in trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert set(trial.params) == set(REGULARIZERS)
        assert set(trial.user_attrs) >= USER_ATTRS
        epochs = trial.user_attrs["epochs_run"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        assert list(trial.intermediate_values.values()) == trial.user_attrs["val_loss"]
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert len(trial.user_attrs[key]) == epochs
        assert 1 <= trial.user_attrs["best_epoch"] <= epochs
        assert isinstance(trial.user_attrs["stopped_early"], bool)
        assert trial.user_attrs["epoch_seconds"] > 0
        assert 0.0 <= trial.user_attrs["weight_sparsity"] <= 1.0
        if trial.state == TrialState.COMPLETE:
            assert trial.value == min(trial.user_attrs["val_loss"])
            assert epochs == 4 or trial.user_attrs["stopped_early"]


def test_an_aggressive_pruner_prunes_trials(launched: Launched) -> None:
    states = [t.state for t in launched.study().trials]
    assert states.count(TrialState.PRUNED) >= 1
    assert states.count(TrialState.COMPLETE) >= 1
    pruned = [t for t in launched.study().trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs["epochs_run"] < 4 or not t.user_attrs["stopped_early"] for t in pruned)


def test_launch_output_reports_progress_summary_and_dashboard(launched: Launched) -> None:
    err, out = launched.result.stderr, launched.result.stdout
    assert f"study tiny on sqlite:///{launched.db}: 0 of {N_TRIALS} trials done" in err
    # Not a terminal: one line per finished trial instead of a live display.
    assert sum(line.startswith("trial ") for line in err.splitlines()) == N_TRIALS
    assert f"{N_TRIALS} trials (budget of {N_TRIALS} trials reached)" in out
    best = launched.study().best_trial
    assert f"trial {best.number}: val_loss {best.value:.4f}" in out
    assert f"optuna-dashboard sqlite:///{launched.db}" in out


def test_trials_command_lists_every_trial(launched: Launched) -> None:
    result = run_cli_here("trials", launched.sweep, cwd=launched.folder)
    assert result.code == 0, result.stderr
    assert f"study tiny: {N_TRIALS} trials" in result.stdout
    for name in ("state", "val loss", "epochs", *REGULARIZERS):
        assert name in result.stdout
    rows = [line for line in result.stdout.splitlines() if "complete" in line or "pruned" in line]
    assert len(rows) == N_TRIALS
    # The same study found through --storage alone (the storage's only study).
    alone = run_cli_here("trials", "--storage", launched.url)
    assert alone.code == 0 and alone.stdout == result.stdout


def test_best_command_shows_metrics_and_a_pasteable_snippet(launched: Launched) -> None:
    result = run_cli_here("best", "--storage", launched.url, "--study", "tiny")
    assert result.code == 0, result.stderr
    best = launched.study().best_trial
    assert f"best trial of tiny: #{best.number}" in result.stdout
    assert f"{best.value:.5f}" in result.stdout
    for key in ("best_val_accuracy", "epochs_run", "weight_sparsity", *REGULARIZERS):
        assert key in result.stdout
    snippet = result.stdout.split("Paste into a sweep file to fix these values:", 1)[1]
    parsed = yaml.safe_load(snippet)
    assert parsed == {"search_space": best.params}
    # Pasted into the sweep file, the snippet makes a valid sweep with every value fixed.
    raw = yaml.safe_load(launched.sweep.read_text())
    raw["search_space"] = parsed["search_space"]
    pasted = launched.folder / "pasted.yaml"
    pasted.write_text(yaml.safe_dump(raw))
    assert run_cli_here("validate", pasted).code == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("best", "--study", "nope"), "no study named 'nope'"),
        (("trials", "--storage", "sqlite:///missing.db"), "no database at missing.db"),
        (("best", "--storage", "sqlite:///missing.db"), "run `regsweep launch` first"),
    ],
)
def test_read_commands_report_missing_study_or_database(
    launched: Launched, args: tuple[str, ...], fragment: str
) -> None:
    full = [*args] if "--storage" in args else [*args, "--storage", launched.url]
    result = run_cli_here(*full, cwd=launched.folder)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
    assert not (launched.folder / "missing.db").exists()


def test_changed_search_space_is_refused(launched: Launched) -> None:
    before = len(launched.study().trials)
    result = run_cli_here(
        "launch", launched.sweep, "--set", "search_space.dropout=0.1", cwd=launched.folder
    )
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: search_space: study 'tiny'")
    assert "dropout: stored" in lines[0] and "another --study name" in lines[0]
    assert len(launched.study().trials) == before


def test_the_refusal_shows_both_ranges_whole() -> None:
    stored = {"dropout": {"low": 0.0, "high": 0.5, "log": False, "step": None}}
    now = {"dropout": {"low": 0.0, "high": 0.6, "log": False, "step": None}}
    assert _difference(stored, now) == (
        'dropout: stored {"low": 0.0, "high": 0.5}, now {"low": 0.0, "high": 0.6}'
    )


def test_more_trials_extend_the_study_and_a_full_budget_runs_nothing(
    launched: Launched, tmp_path: Path
) -> None:
    url = copy_db(launched, tmp_path)
    more = run_cli("launch", launched.sweep, "--storage", url, "--n-trials", str(N_TRIALS + 2))
    assert more.code == 0, more.stderr
    assert f"{N_TRIALS} of {N_TRIALS + 2} trials done" in more.stderr
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == N_TRIALS + 2
    assert [t.number for t in study.trials] == list(range(N_TRIALS + 2))

    again = run_cli("launch", launched.sweep, "--storage", url, "--n-trials", str(N_TRIALS + 2))
    assert again.code == 0, again.stderr
    assert f"no trial run: budget of {N_TRIALS + 2} trials reached" in again.stdout
    assert "raise --n-trials to add more" in again.stdout
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == N_TRIALS + 2


def test_same_sweep_and_seed_give_the_same_first_trials(launched: Launched, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = run_cli("launch", launched.sweep, "--storage", fresh, "--n-trials", "2")
    assert result.code == 0, result.stderr
    first = optuna.load_study(study_name="tiny", storage=fresh).trials
    original = launched.study().trials[:2]
    assert [t.params for t in first] == [t.params for t in original]
    assert [t.user_attrs["val_loss"] for t in first] == [t.user_attrs["val_loss"] for t in original]


def trial_states(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            return [row[0] for row in connection.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # tables not created yet, or a writer holds the lock
        return []


def test_ctrl_c_fails_and_requeues_the_running_trial_then_launch_resumes(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    # Long trials (many epochs, no early stopping, no pruning), so Ctrl-C lands inside one.
    sweep = sweep_file(
        tiny_idx,
        tmp_path,
        study={"n_trials": 2, "pruner": "none"},
        train={"max_epochs": 400},
        search_space={"patience": 1000},
    )
    db = tmp_path / "study.db"
    with reaped([start(regsweep("launch", sweep), tmp_path / "launch.log", cwd=tmp_path)]) as (
        proc,
    ):
        wait_until(lambda: "RUNNING" in trial_states(db), "a running trial", procs=[proc])
        time.sleep(0.5)  # well inside the trial's epochs
        proc.popen.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    err = proc.output()
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err, err

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    assert states == [TrialState.FAIL, TrialState.WAITING]
    failed, queued = study.trials
    assert failed.user_attrs["fail_reason"] == "interrupted"
    assert queued.system_attrs["fixed_params"] == failed.params  # queued for a rerun

    assert f"interrupted: trial {failed.number} marked failed and queued again" in err, err
    # A budget of one: the resume runs just the queued trial (the interrupted one is not
    # counted), with the same 400 epochs, since a changed max_epochs would be refused.
    resumed = run_cli("launch", sweep, "--n-trials", "1", cwd=tmp_path)
    assert resumed.code == 0, resumed.stderr
    assert "0 of 1 trials done" in resumed.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == failed.params  # the interrupted trial was rerun


def test_a_resume_that_changes_what_a_trial_means_is_refused_other_changes_are_noted(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    sweep = sweep_file(tiny_idx, tmp_path, study={"n_trials": 1}, train={"max_epochs": 2})
    assert run_cli("launch", sweep, cwd=tmp_path).code == 0
    db = tmp_path / "study.db"
    for change, key in [
        ("train.max_epochs=3", "train.max_epochs: 2 -> 3"),
        ("model.hidden=[16]", "model.hidden: [32, 16] -> [16]"),
        ("data.val_fraction=0.3", "data.val_fraction: 0.25 -> 0.3"),
    ]:
        refused = run_cli("launch", sweep, "--set", change, "--n-trials", "2", cwd=tmp_path)
        assert refused.code == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: " + change.split("=")[0]), lines
        assert key in lines[0] and "another --study name" in lines[0], lines
        assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials) == 1
    noted = run_cli("launch", sweep, "--set", "study.seed=7", "--n-trials", "2", cwd=tmp_path)
    assert noted.code == 0, noted.stderr
    assert "warning: " in noted.stderr and "study.seed: 0 -> 7" in noted.stderr, noted.stderr
    assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials) == 2


def test_a_study_split_by_the_older_image_pipeline_is_not_resumed(
    launched: Launched, tmp_path: Path
) -> None:
    # A study an older regsweep made: its config stored, but no data-pipeline version. Its
    # IDX rows were split another way then, so new trials would not compare with old ones.
    url = copy_db(launched, tmp_path)
    old = optuna.load_study(study_name="tiny", storage=url)
    assert old.user_attrs["regsweep_data_pipeline"] == 2  # what this version records
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("DELETE FROM study_user_attributes WHERE key = 'regsweep_data_pipeline'")
    before = len(optuna.load_study(study_name="tiny", storage=url).trials)
    refused = run_cli_here("launch", launched.sweep, "--storage", url, "--n-trials", "9")
    assert refused.code == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.dataset: study 'tiny'"), lines
    assert "older regsweep" in lines[0] and "another --study name" in lines[0]
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == before
