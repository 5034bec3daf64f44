"""Bad input, as a user meets it: one line naming the key and the allowed values, exit 2,
no traceback, and no study in the database. Plus the precedence of every settings source.

Most cases run the real CLI in this process (``run_cli_here``); a few run it as a new
``regsweep`` process (``run_cli``), so that the process's own exit status and stderr are
checked end to end too."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from regsweep.config.loading import STORAGE_ENV, load_sweep, parse_set, resolve_config
from regsweep.errors import ConfigError
from regsweep.storage.settings import DEFAULT_STORAGE
from regsweep.sweep.study import build_pruner, build_sampler
from tests.conftest import CliResult, IdxData, idx_sweep, run_cli, run_cli_here

# urllib honours these: a proxy on a closed local port makes "no network" certain and instant,
# even on a machine that could reach the MNIST mirrors.
NO_NETWORK = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "",
    "NO_PROXY": "",
}


def studies_in(db: Path) -> list[str]:
    """Study names in an SQLite file, without creating anything (Optuna would add tables)."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "studies" not in tables:
            return []
        return [row[0] for row in connection.execute("SELECT study_name FROM studies")]


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    """Exit 2 and exactly one stderr line, starting ``error:``, holding every fragment."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def write(tmp_path: Path, raw: dict[str, Any] | str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


def mutate(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


# (key path, bad value, fragments the message must hold: the key and the allowed values)
BAD_VALUES = [
    pytest.param(
        "study.n_trail",
        3,
        ["study.n_trail", "unknown key", "allowed: name, storage, direction, n_trials"],
        id="unknown-key",
    ),
    pytest.param(
        "search_space.dropuot",
        0.1,
        ["search_space.dropuot", "allowed: dropout, weight_decay, l1, batch_norm, patience"],
        id="unknown-regularizer",
    ),
    pytest.param(
        "train.max_epochs", "many", ["train.max_epochs", "valid integer", "'many'"], id="wrong-type"
    ),
    pytest.param(
        "train.optimizer", "rmsprop", ["train.optimizer", "'adam', 'adamw' or 'sgd'"], id="enum"
    ),
    pytest.param(
        "search_space.dropout", 1.0, ["search_space.dropout", "0 <= dropout < 1"], id="dropout-1"
    ),
    pytest.param(
        "search_space.dropout",
        {"low": -0.1, "high": 0.5},
        ["search_space.dropout", "-0.1", "0 <= dropout < 1"],
        id="dropout-negative",
    ),
    pytest.param(
        "search_space.weight_decay",
        {"low": 0.1, "high": 0.01},
        ["search_space.weight_decay", "low (0.1) is greater than high (0.01)", "low <= high"],
        id="low-above-high",
    ),
    pytest.param(
        "search_space.l1",
        {"low": 0.0, "high": 1e-3, "log": True},
        ["search_space.l1", "log range needs low > 0"],
        id="log-low-zero",
    ),
    pytest.param(
        "search_space.patience", 0, ["search_space.patience", "0", "integer", ">= 1"], id="patience"
    ),
    pytest.param(
        "search_space.batch_norm",
        {"choices": []},
        ["search_space.batch_norm", "choices must not be empty", "allowed"],
        id="empty-choices",
    ),
    pytest.param(
        "data.dataset",
        "cifar",
        ["data.dataset", "'cifar'", "'idx', 'digits', 'table', 'arrays' or 'torchvision'"],
        id="unknown-dataset",
    ),
    pytest.param(
        "study.storage",
        "study.db",
        ["study.storage", "not a database URL", "sqlite:///", "did you mean 'sqlite:///study.db'"],
        id="storage-bare-path",
    ),
    pytest.param(
        "study.storage",
        "mysql://user@localhost/db",
        ["study.storage", "'mysql' is not supported", "postgresql+psycopg://"],
        id="storage-backend",
    ),
    pytest.param(
        "study.sampler.options",
        {"n_startup": 3},
        ["study.sampler.options", "n_startup", "allowed:", "n_startup_trials"],
        id="sampler-option",
    ),
    pytest.param(
        "study.pruner",
        {"name": "median", "options": {"warmup": 2}},
        ["study.pruner.options", "warmup", "allowed:", "n_warmup_steps"],
        id="pruner-option",
    ),
]


@pytest.mark.parametrize(("key", "value", "fragments"), BAD_VALUES)
def test_bad_value_is_one_line_and_creates_no_study(
    tiny_idx: IdxData, tmp_path: Path, key: str, value: Any, fragments: list[str]
) -> None:
    sweep = write(tmp_path, mutate(idx_sweep(tiny_idx, tmp_path), key, value))
    result = run_cli_here("launch", sweep, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert studies_in(tmp_path / "study.db") == []
    assert not (tmp_path / "study.db").exists()  # nothing is opened before the input is valid


def test_missing_file(tmp_path: Path) -> None:
    result = run_cli("launch", tmp_path / "nope.yaml", cwd=tmp_path)
    assert_one_line_error(result, "nope.yaml", "no such sweep file")
    assert not (tmp_path / "regsweep.db").exists()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            "study:\n  name: x\n  n_trials: [1, 2\ndata: {}\n",
            ["sweep.yaml:4:", "YAML syntax error"],
            id="syntax-says-line",
        ),
        pytest.param(
            "study:\n  name: !!python/object/apply:os.system ['touch hacked']\n",
            ["sweep.yaml:2:", "!!python/object/apply:os.system", "not allowed", "plain YAML"],
            id="python-tag",
        ),
        pytest.param("- a\n- b\n", ["expected a mapping of sections", "study, data"], id="list"),
    ],
)
def test_unreadable_yaml(tmp_path: Path, text: str, fragments: list[str]) -> None:
    sweep = write(tmp_path, text)
    result = run_cli_here("launch", sweep, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "hacked").exists()
    assert not (tmp_path / "regsweep.db").exists()


@pytest.mark.parametrize("download", [False, True])
def test_mnist_missing_offline_names_folder_files_and_alternative(
    tmp_path: Path, download: bool
) -> None:
    root = tmp_path / "mnist-root"
    raw = {
        "study": {"storage": f"sqlite:///{tmp_path / 'study.db'}"},
        "data": {"dataset": "mnist", "root": str(root), "download": download},
    }
    result = run_cli("launch", write(tmp_path, raw), cwd=tmp_path, env=NO_NETWORK, timeout=120)
    line = assert_one_line_error(
        result,
        "data.dataset",
        str(root / "MNIST" / "raw"),
        "train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "dataset: digits",
        "dataset: idx",
    )
    assert ("download is off" in line) == (not download)
    assert ("download failed" in line) == download
    assert studies_in(tmp_path / "study.db") == []


def test_debug_shows_the_traceback(tiny_idx: IdxData, tmp_path: Path) -> None:
    sweep = write(tmp_path, mutate(idx_sweep(tiny_idx, tmp_path), "search_space.dropout", 2.0))
    result = run_cli("launch", sweep, "--debug", cwd=tmp_path)
    assert result.code == 2
    assert "Traceback" in result.stderr
    assert "error: " in result.stderr and "search_space.dropout" in result.stderr


def test_set_override_errors_name_their_origin(tiny_idx: IdxData, tmp_path: Path) -> None:
    sweep = write(tmp_path, idx_sweep(tiny_idx, tmp_path))
    result = run_cli_here("launch", sweep, "--set", "train.max_epochs=0", cwd=tmp_path)
    assert_one_line_error(result, "--set train.max_epochs", "greater than or equal to 1")
    result = run_cli_here("launch", sweep, "--set", "train.max_epochs", cwd=tmp_path)
    assert_one_line_error(result, "expected key.path=value")
    assert not (tmp_path / "study.db").exists()


def test_a_bad_storage_url_is_blamed_on_where_it_came_from_and_never_shows_a_password(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    sweep = write(tmp_path, idx_sweep(tiny_idx, tmp_path))
    from_env = run_cli_here("launch", sweep, cwd=tmp_path, env={"REGSWEEP_STORAGE": "study.db"})
    assert_one_line_error(from_env, "REGSWEEP_STORAGE: study.storage", "did you mean")
    # A slash short of a URL: not parseable, but its password is still hidden.
    typo = "postgresql+psycopg:/u:s3cr3t@db/x"
    for command in ("validate", "launch"):
        result = run_cli_here(command, sweep, "--storage", typo, cwd=tmp_path)
        assert_one_line_error(result, "--storage: study.storage", "u:***@db", "not a database URL")
        assert "s3cr3t" not in result.stdout + result.stderr
    into = run_cli_here(
        "launch", sweep, "--set", "study.storage.x=1", cwd=tmp_path,
        env={"REGSWEEP_STORAGE": "postgresql+psycopg://u:s3cr3t@db/x"},
    )  # fmt: skip
    assert_one_line_error(into, "--set study.storage.x", "u:***@db")
    assert "s3cr3t" not in into.stderr
    assert not (tmp_path / "study.db").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["launch", "SWEEP", "--n-trials", "abc"], ["regsweep launch", "--n-trials", "integer"]),
        (["launch"], ["regsweep launch", "Missing argument 'SWEEP.yaml'"]),
        (["lunch", "SWEEP"], ["No such command 'lunch'"]),
        (
            ["ablate", "--repeats", "1"],
            ["regsweep ablate", "--repeats", "greater than or equal to 2"],
        ),
    ],
)
def test_command_line_mistakes_are_one_line_errors(
    tiny_idx: IdxData, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    sweep = write(tmp_path, idx_sweep(tiny_idx, tmp_path))
    result = run_cli_here(*(str(sweep) if a == "SWEEP" else a for a in args), cwd=tmp_path)
    assert_one_line_error(result, *fragments, "--help")
    assert not (tmp_path / "study.db").exists()


def test_validate_prints_budget_and_runs_nothing(tiny_idx: IdxData, tmp_path: Path) -> None:
    sweep = write(tmp_path, idx_sweep(tiny_idx, tmp_path))
    result = run_cli_here("validate", sweep, "--n-trials", "7", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "7 trials x 4 epochs = 28 epochs" in result.stdout
    assert not (tmp_path / "study.db").exists()


# --- precedence and --set, in process ----------------------------------------------------

FILE = {"study": {"storage": "sqlite:///file.db", "n_trials": 5}}


@pytest.mark.parametrize(
    ("flags", "sets", "env", "raw", "expected"),
    [
        ({"study.storage": "sqlite:///flag.db"}, {"study.storage": "sqlite:///set.db"},
         {STORAGE_ENV: "sqlite:///env.db"}, FILE, "sqlite:///flag.db"),
        ({"study.storage": None}, {"study.storage": "sqlite:///set.db"},
         {STORAGE_ENV: "sqlite:///env.db"}, FILE, "sqlite:///set.db"),
        ({}, {}, {STORAGE_ENV: "sqlite:///env.db"}, FILE, "sqlite:///env.db"),
        ({}, {}, {STORAGE_ENV: ""}, FILE, "sqlite:///file.db"),
        ({}, {}, {}, {}, DEFAULT_STORAGE),
    ],
)  # fmt: skip
def test_storage_precedence(
    flags: dict[str, Any], sets: dict[str, Any], env: dict[str, str], raw: dict[str, Any],
    expected: str,
) -> None:  # fmt: skip
    config = resolve_config(raw, source="f.yaml", sets=sets, flags=flags, env=env)
    assert config.study.storage == expected


def test_flag_beats_set_beats_file_beats_default() -> None:
    def n_trials(**kwargs: Any) -> int:
        return resolve_config(
            FILE if kwargs.pop("file", True) else {}, source="f", env={}, **kwargs
        ).study.n_trials

    assert n_trials(flags={"study.n_trials": 9}, sets={"study.n_trials": 7}) == 9
    assert n_trials(sets={"study.n_trials": 7}) == 7
    assert n_trials() == 5
    assert n_trials(file=False) == 50


def test_load_sweep_names_study_after_file_and_parses_set_values(tmp_path: Path) -> None:
    sweep = write(tmp_path, {"train": {"max_epochs": 3}}, name="my-sweep.yaml")
    config = load_sweep(
        sweep,
        sets=["train.lr=0.01", "search_space.dropout.high=0.4", "search_space.dropout.low=0"],
        env={},
    )
    assert config.study_name == "my-sweep"
    assert config.train.lr == 0.01 and config.train.max_epochs == 3
    assert (config.search_space.dropout.low, config.search_space.dropout.high) == (0.0, 0.4)


def test_set_turns_a_fixed_value_into_a_range(tmp_path: Path) -> None:
    sweep = write(tmp_path, {"search_space": {"dropout": 0.2}})
    config = load_sweep(
        sweep, sets=["search_space.dropout.low=0.1", "search_space.dropout.high=0.3"], env={}
    )
    assert config.search_space.dropout.is_fixed is False


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ("train.max_epochs", "expected key.path=value"),
        ("=3", "expected key.path=value"),
        ("train..lr=1", "expected key.path=value"),
        ("train.lr=[1", "cannot parse value '[1' as YAML"),
    ],
)
def test_set_parsing_errors(assignment: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_set([assignment])
    assert fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_set_into_a_value_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config({"study": {"name": "x"}}, source="f", sets={"study.name.first": 1}, env={})
    assert "study.name holds 'x', not a section" in str(info.value)


@pytest.mark.parametrize(
    ("section", "options", "fragment"),
    [
        ("sampler", {"name": "random", "options": {"n_startup_trials": 3}}, "RandomSampler"),
        ("pruner", {"name": "hyperband", "options": {"min_epochs": 3}}, "HyperbandPruner"),
        ("pruner", {"name": "median", "options": {"n_warmup_steps": "x"}}, "MedianPruner"),
    ],
)
def test_sampler_and_pruner_options_are_one_line_errors(
    section: str, options: dict[str, Any], fragment: str
) -> None:
    config = resolve_config({"study": {section: options}}, source="f", env={})
    with pytest.raises(ConfigError) as info:
        build_sampler(config) if section == "sampler" else build_pruner(config)
    message = str(info.value)
    assert message.startswith(f"study.{section}.options: ") and fragment in message
    assert len(message.splitlines()) == 1
