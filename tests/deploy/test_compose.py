"""docker-compose.yml, Dockerfile and .env.example, without a Docker engine.

``docker-compose config`` validates and resolves the file; then each service's command
runs as a local process against the local PostgreSQL, with the file's environment mapped
to local values: this proves the commands, the URL and the volumes in the file are right.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import REPO, make_idx_dataset, skip_or_fail
from tests.processes import (
    StudyWatch,
    cli_env,
    free_port,
    http_get,
    reaped,
    start,
    unique_name,
    wait_until,
)

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
APP = "/app"  # the image's WORKDIR
# The variables docker-compose.yml reads (from .env, or the environment, which wins).
COMPOSE_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "WORKER_THREADS",
    "TORCH_INDEX",
    "DASHBOARD_PORT",
)


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        skip_or_fail("docker-compose is needed: apt-get install docker-compose")
    # The variables must come from env_file alone, not from whoever runs the tests.
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    return subprocess.run(
        [exe, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_compose_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_config(empty)
    assert result.returncode != 0
    assert "copy .env.example to .env and set POSTGRES_PASSWORD" in result.stderr


def test_compose_services_are_wired_as_documented(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == {"postgres", "worker", "dashboard"}

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "ports" not in postgres  # reachable from the other services only
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0]
    assert volume.split(":")[0] in resolved["volumes"]  # a named volume, not a bind mount
    assert volume.split(":")[1] == "/var/lib/postgresql/data"

    worker = services["worker"]
    assert worker["command"][:2] == ["regsweep", "worker"]
    assert worker["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert worker["restart"] == "on-failure"
    # docker stop's SIGTERM must reach regsweep, which PID 1 would not get before it
    # installs a handler.
    assert worker["init"] is True and services["dashboard"]["init"] is True
    # Scalable with --scale worker=N: no fixed name and no published port.
    assert "container_name" not in worker and "ports" not in worker
    cache = worker["volumes"][0].split(":")
    assert cache[0] in resolved["volumes"] and cache[1] == f"{APP}/data"

    dashboard = services["dashboard"]
    assert dashboard["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert dashboard["ports"] == ["127.0.0.1:8080:8080/tcp"]  # this machine only
    assert dashboard["environment"]["REGSWEEP_STORAGE"] == worker["environment"]["REGSWEEP_STORAGE"]


def test_torch_index_flows_from_env_file_to_the_build(
    resolved: dict[str, Any], tmp_path: Path
) -> None:
    """`docker compose up --build` must build with the index .env names, not the default."""
    for service in ("worker", "dashboard"):
        build = resolved["services"][service]["build"]
        assert build["args"] == {"TORCH_INDEX": "https://download.pytorch.org/whl/cpu"}
    for value in ("https://download.pytorch.org/whl/cu124", ""):  # empty: pip's default
        env_file = tmp_path / "torch.env"
        env_file.write_text(f"{ENV_EXAMPLE.read_text()}\nTORCH_INDEX={value}\n")
        result = compose_config(env_file)
        assert result.returncode == 0, result.stderr
        services = yaml.safe_load(result.stdout)["services"]
        assert services["worker"]["build"]["args"]["TORCH_INDEX"] == value
        assert services["dashboard"]["build"]["args"]["TORCH_INDEX"] == value
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch' in dockerfile


def test_dashboard_knows_where_compose_publishes_it(resolved: dict[str, Any]) -> None:
    dashboard = resolved["services"]["dashboard"]
    assert dashboard["environment"]["REGSWEEP_DASHBOARD_PUBLISHED"] == "127.0.0.1:8080"


def test_secrets_stay_out_of_git_and_the_image() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False
    ).returncode
    assert ignored == 0, ".env must be ignored by git"
    assert "POSTGRES_PASSWORD" in env_example()
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".venv", ".env", ".git", "*.db", "data"):
        assert entry in dockerignore
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    assert f"WORKDIR {APP}" in dockerfile


def mnist_cache(folder: Path) -> None:
    """A tiny MNIST-shaped data set where torchvision would have downloaded MNIST."""
    raw = folder / "MNIST" / "raw"
    data = make_idx_dataset(raw, n_train=600, n_test=100, side=28)
    data.test_images.rename(raw / "t10k-images-idx3-ubyte.gz")
    data.test_labels.rename(raw / "t10k-labels-idx1-ubyte.gz")


def local_command(command: list[str]) -> list[str]:
    assert command[0] == "regsweep"  # the console script the image installs
    return [sys.executable, "-m", "regsweep", *command[1:]]


def replace_option(command: list[str], option: str, value: str) -> list[str]:
    index = command.index(option)
    return [*command[: index + 1], value, *command[index + 2 :]]


@pytest.mark.postgres
def test_compose_services_run_as_local_processes(
    resolved: dict[str, Any], postgres_url: str, tmp_path: Path
) -> None:
    services = resolved["services"]
    secrets = env_example()

    # The URL in the file names the postgres service and the credentials it was given.
    in_file = make_url(services["worker"]["environment"]["REGSWEEP_STORAGE"])
    assert in_file.drivername == "postgresql+psycopg"
    assert (in_file.host, in_file.port) == ("postgres", 5432)
    pg_env = services["postgres"]["environment"]
    assert in_file.username == pg_env["POSTGRES_USER"] == secrets["POSTGRES_USER"]
    assert in_file.password == pg_env["POSTGRES_PASSWORD"] == secrets["POSTGRES_PASSWORD"]
    assert in_file.database == pg_env["POSTGRES_DB"] == secrets["POSTGRES_DB"]

    # The image: /app holds sweeps/ (COPY sweeps ./sweeps); the mnist volume is /app/data.
    app = tmp_path / "app"
    shutil.copytree(REPO / "sweeps", app / "sweeps")
    mnist_cache(app / "data")
    name = unique_name("compose")
    small = ["--study", name, "--n-trials", "4", "--set", "train.max_epochs=1"]

    def local_env(service: str) -> dict[str, str]:
        env = {k: str(v) for k, v in services[service]["environment"].items()}
        env["REGSWEEP_STORAGE"] = postgres_url  # the postgres service, as seen from here
        return cli_env(**env)

    dashboard_cmd = local_command(services["dashboard"]["command"])
    port = free_port()
    dashboard_cmd = replace_option(dashboard_cmd, "--port", str(port))
    # 0.0.0.0 inside the container is what compose publishes on 127.0.0.1.
    dashboard_cmd = replace_option(dashboard_cmd, "--host", "127.0.0.1")

    watch = StudyWatch(postgres_url, name)
    try:
        procs = [
            start(
                [*local_command(services["worker"]["command"]), *small],
                tmp_path / f"worker-{i}.log",
                cwd=app,
                env=local_env("worker"),
            )
            for i in range(3)
        ]
        procs.append(
            start(
                [*dashboard_cmd, "--study", name],
                tmp_path / "dashboard.log",
                cwd=app,
                env=local_env("dashboard"),
            )
        )
        with reaped(procs):
            *workers, dashboard = procs
            for worker in workers:
                assert worker.wait() == 0, worker.output()
                assert "Traceback" not in worker.output()

            def study_in_dashboard() -> dict[str, Any] | None:
                body = http_get(f"http://127.0.0.1:{port}/api/studies")
                listed = json.loads(body)["study_summaries"] if body else []
                return next((s for s in listed if s["study_name"] == name), None)

            study = wait_until(study_in_dashboard, "the study in the dashboard", procs=[dashboard])
            detail = json.loads(
                http_get(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}") or b"{}"
            )
            assert len(detail["trials"]) == 4
            dashboard.popen.send_signal(signal.SIGTERM)
            assert dashboard.wait() == 0, dashboard.output()
        trials = watch.trials()
        assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
        # Every worker found MNIST in the shared cache: none tried to download it.
        for worker in workers:
            assert "download" not in worker.output().lower()
    finally:
        watch.delete()
