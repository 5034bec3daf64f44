"""Every sweep file shipped in sweeps/ validates, in the library and through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from regsweep.config.loading import load_sweep
from regsweep.sweep.study import build_pruner, build_sampler
from tests.conftest import REPO, run_cli_here

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def test_sweeps_folder_is_not_empty() -> None:
    assert {p.name for p in SWEEPS} >= {"mnist.yaml", "digits.yaml"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_file_loads_and_builds(path: Path) -> None:
    config = load_sweep(path, env={})
    assert config.study_name
    build_sampler(config)
    build_pruner(config)
    # A shipped sweep searches: at least one regularizer is not fixed.
    assert any(not spec.is_fixed for _, spec in config.search_space.items())


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_regsweep_validate_accepts_sweep_file(path: Path, tmp_path: Path) -> None:
    result = run_cli_here("validate", path, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert f"{path}: valid." in result.stdout
    assert not list(tmp_path.iterdir())  # validate writes nothing, not even a database
