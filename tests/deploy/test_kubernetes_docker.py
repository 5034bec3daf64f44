"""The worker container of ``regsweep kubernetes``'s Indexed Job, run for real under Docker.

No Kubernetes cluster runs here, so the kubelet's part is played by ``docker run``: the
compose test's project image (``regsweep:latest``, built the same way and shared with it),
the container's exact ``command`` (as the entrypoint), its environment with the Secret's
value and Kubernetes' ``$(VAR)`` expansion, the ConfigMap's sweep.yaml mounted where the
Job mounts it, an emptyDir as tmpfs, its user, capabilities and memory limit, the
``JOB_COMPLETION_INDEX`` of each pod, and ``regsweep-postgres`` resolving to the test
PostgreSQL server. Two pods run the budget and exit 0 (the Job completes); a pod stopped
with the Job's terminationGracePeriodSeconds fails and queues again its trial and exits
143 (Kubernetes deleting a pod does the same: SIGTERM, then SIGKILL after the period).
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from regsweep.sweep.budget import retried_number
from tests.conftest import make_idx_dataset, run_cli_here
from tests.deploy.test_compose_docker import (
    Stack,
    build_image,
    compose_command,
    env_values,
    require_docker,
    run,
)
from tests.processes import StudyWatch, unique_name, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.timeout(1800)]

IMAGE = "regsweep:latest"
DB_USER = DB_NAME = "regsweep"  # what the manifests' in-cluster URL names


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' dependent variables: ``$(NAME)`` of a variable defined earlier in the
    list is replaced, ``$$(`` stands for a literal ``$(``, anything else is kept as is."""

    def one(match: re.Match[str]) -> str:
        if match[0].startswith("$$"):
            return match[0][1:]
        return defined.get(match[1], match[0])

    return re.sub(r"\$\$\(|\$\((\w+)\)", one, value)


def container_env(container: dict[str, Any], secret: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "regsweep-db", ref
            env[item["name"]] = secret[ref["key"]]
        else:
            env[item["name"]] = expand(item["value"], env)
    return env


def memory(quantity: str) -> str:
    """A Kubernetes memory quantity as docker's --memory: 2Gi -> 2g."""
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", quantity).groups()  # type: ignore[union-attr]
    return number + {"Ki": "k", "Mi": "m", "Gi": "g", "Ti": "t", None: ""}[unit]


class Pod:
    """One pod of the Indexed Job: its container, as the kubelet would start it."""

    def __init__(
        self, job: dict[str, Any], index: int, secret: dict[str, str], folders: dict[str, Path]
    ) -> None:
        spec = job["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        self.grace = int(spec["terminationGracePeriodSeconds"])
        self.name = f"{job['metadata']['name']}-{index}-{secrets.token_hex(3)}"
        env = {**container_env(container, secret), "JOB_COMPLETION_INDEX": str(index)}
        security = container["securityContext"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        args = [
            "docker",
            "run",
            "--detach",
            f"--name={self.name}",
            f"--hostname={self.name}",
            "--network=host",  # the test PostgreSQL on 127.0.0.1
            "--add-host=regsweep-postgres:127.0.0.1",  # the Service's name
            f"--user={security['runAsUser']}",
            "--security-opt=no-new-privileges",
            *(f"--cap-drop={c}" for c in security["capabilities"]["drop"]),
            f"--memory={memory(container['resources']['limits']['memory'])}",
            f"--cpus={container['resources']['requests']['cpu']}",
        ]
        for name, value in env.items():
            args += ["--env", f"{name}={value}"]
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                args.append(f"--tmpfs={mount['mountPath']}:uid={security['runAsUser']}")
            else:
                source = folders[volume["configMap"]["name"]]
                args.append(f"--volume={source}:{mount['mountPath']}:ro")
        data = folders["data"]  # the sweep's IDX files, where its paths say
        args.append(f"--volume={data}:{data}:ro")
        args += [f"--entrypoint={container['command'][0]}", IMAGE, *container["command"][1:]]
        self.args = args
        started = run(args, 120)
        assert started.returncode == 0, started.stderr
        self.id = started.stdout.strip()

    def state(self) -> tuple[str, int]:
        out = run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", self.id], 60)
        status, code = out.stdout.split()
        return status, int(code)

    def logs(self) -> str:
        result = run(["docker", "logs", self.id], 60)
        return result.stdout + result.stderr

    def remove(self) -> None:
        run(["docker", "rm", "-f", self.id], 120)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_docker()
    lines: list[str] = []
    env_file, values = env_values(tmp_path_factory.mktemp("k8s-image"))
    stack = Stack(compose_command(), env_file, values)
    stack.sweep("mnist", 12, 2, 2000, 20, 120)  # compose needs the override's variables
    build_image(stack, lines.append)
    return IMAGE


@pytest.fixture(scope="module")
def database(postgres_url: str) -> str:
    """The in-cluster URL's role and database, on the test server (trust: any password)."""
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": DB_USER}
            ).first()
            if not exists:
                connection.execute(sqlalchemy.text(f'CREATE ROLE "{DB_USER}" LOGIN'))
            exists = connection.execute(
                sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DB_NAME}
            ).first()
            if not exists:
                connection.execute(
                    sqlalchemy.text(f'CREATE DATABASE "{DB_NAME}" OWNER "{DB_USER}"')
                )
    finally:
        admin.dispose()
    return (
        make_url(postgres_url)
        .set(username=DB_USER, database=DB_NAME)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder the image's user (uid 1000) can read: pytest's own are root's alone."""
    folder = Path(tempfile.mkdtemp(prefix="regsweep-k8s-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def job_of(shared: Path, study: str, *args: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifests for ``study``; returns the Job and the folders its volumes come from."""
    data = make_idx_dataset(shared / "data", n_train=600, n_test=100)
    for path in (shared / "data").iterdir():
        path.chmod(0o644)
    (shared / "data").chmod(0o755)
    sweep = {
        "study": {"name": study, "pruner": "none", "heartbeat_interval": 1, "grace_period": 6},
        "data": {
            "dataset": "idx",
            "train_images": str(data.train_images),
            "train_labels": str(data.train_labels),
            "val_fraction": 0.25,
        },
        "model": {"hidden": [32, 16]},
        "train": {"batch_size": 64, "device": "cpu"},
        "search_space": {"dropout": {"low": 0.0, "high": 0.5}, "patience": 1000},
    }
    source = shared / "mnist.yaml"
    source.write_text(yaml.safe_dump(sweep, sort_keys=False))
    result = run_cli_here("kubernetes", source, "--image", IMAGE, *args)
    assert result.code == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    mounted = shared / "configmap"
    mounted.mkdir()
    mounted.chmod(0o755)
    (mounted / "sweep.yaml").write_text(config_map["data"]["sweep.yaml"])
    (mounted / "sweep.yaml").chmod(0o644)
    return job, {config_map["metadata"]["name"]: mounted, "data": shared / "data"}


def test_two_pods_of_the_job_run_the_budget_and_complete(
    image: str, database: str, shared: Path
) -> None:
    name, n_trials = unique_name("k8s"), 4
    job, folders = job_of(
        shared, name, "--workers=2", f"--n-trials={n_trials}", "--set=train.max_epochs=2"
    )
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    secret = {"password": secrets.token_hex(12)}
    watch = StudyWatch(database, name)
    pods: list[Pod] = []
    try:
        pods = [Pod(job, index, secret, folders) for index in range(2)]
        wait_until(
            lambda: all(p.state()[0] == "exited" for p in pods), "both pods to finish", timeout=600
        )
        states = [p.state() for p in pods]
        logs = "".join(p.logs() for p in pods)
        assert states == [("exited", 0), ("exited", 0)], logs  # each index succeeds
        trials = watch.trials()
        assert len(trials) == n_trials and all(t.state.is_finished() for t in trials), logs
        hosts = {t.user_attrs["worker"].split(":")[0] for t in trials}
        assert hosts <= {p.name for p in pods}, hosts
        assert secret["password"] not in logs and "Traceback" not in logs
        assert "regsweep-postgres:5432" in logs  # it reached the database by its Service name
    finally:
        for pod in pods:
            pod.remove()
        watch.delete()


def test_a_pod_stopped_within_its_grace_period_requeues_its_trial(
    image: str, database: str, shared: Path
) -> None:
    name = unique_name("k8s-stop")
    job, folders = job_of(
        shared, name, "--workers=1", "--n-trials=100", "--set=train.max_epochs=100000"
    )
    watch = StudyWatch(database, name)
    pod: Pod | None = None
    try:
        pod = Pod(job, 0, {"password": secrets.token_hex(12)}, folders)
        current = pod

        def mid_trial() -> Any:
            if current.state()[0] != "running":
                raise AssertionError(f"the pod stopped:\n{current.logs()}")
            running = [
                t for t in watch.trials() if t.state == TrialState.RUNNING and t.intermediate_values
            ]
            return running[0] if running else None

        trial = wait_until(mid_trial, "the pod to be inside a trial", timeout=300)
        started = time.monotonic()
        # What the kubelet does to a pod being deleted: SIGTERM, SIGKILL after the period.
        stopped = run(["docker", "stop", f"--time={pod.grace}", pod.id], pod.grace + 60)
        took = time.monotonic() - started
        assert stopped.returncode == 0, stopped.stderr
        assert pod.state() == ("exited", 143), pod.logs()  # its own exit, not SIGKILL's 137
        assert took < pod.grace, took
        trials = {t.number: t for t in watch.trials()}
        assert trials[trial.number].state == TrialState.FAIL
        assert trials[trial.number].user_attrs["fail_reason"] == "terminated (SIGTERM)"
        retry = [t for t in trials.values() if retried_number(t) == trial.number]
        assert [t.state for t in retry] == [TrialState.WAITING]
        assert all(t.state != TrialState.RUNNING for t in trials.values())
        assert "marked failed and queued again" in pod.logs()
    finally:
        if pod is not None:
            pod.remove()
        watch.delete()
