"""``docker compose up --scale worker=4`` for real: the project's compose file and image.

    make compose-test        # this file alone; it also runs in ``make test``

Builds stand-ins for ``python:3.11-slim`` and ``postgres:16`` where those tags are absent
(Docker Hub is unreachable here; the stand-ins are labelled ``org.regsweep.standin``), the
project image with its own Dockerfile (TORCH_INDEX empty in .env: pip's default index),
then brings up postgres, 4 workers and the dashboard with the project's
docker-compose.yml plus ``tests/docker/docker-compose.test.yml`` (the real MNIST t10k IDX
files, a small budget). Each phase is a test that prints its figures: the budget on one
study, ``docker compose stop`` mid-trial (long and one-epoch trials), ``docker kill`` of a
worker and a crash inside one, then ``down -v``. Study state is read on the host with
psql inside the postgres container. Nothing is written into the checkout: .env lives in
a temporary folder and is given with ``--env-file``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIGURES, MNIST_T10K, REPO, skip_or_fail
from tests.processes import free_port, http_get

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # cold: builds about 4 min

DOCKER_DIR = REPO / "tests/docker"
OVERRIDE = DOCKER_DIR / "docker-compose.test.yml"
STANDIN = "org.regsweep.standin"
BASE = "regsweep-standin-base:bookworm"  # the debootstrap rootfs both stand-ins start FROM
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # trusts this host's TLS proxy too
# The variables docker-compose.yml reads: the test's .env alone must set them.
COMPOSE_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "WORKER_THREADS",
    "TORCH_INDEX",
    "DASHBOARD_PORT",
)
SIGTERM_REASON = "terminated (SIGTERM)"
IDLE_MESSAGE = "the running trial was marked failed and queued again"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def run(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A bounded command; its output is returned, never printed (it may hold a password)."""
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{' '.join(args[:4])} ... still running after {timeout:g} s"
        ) from None


def ok(args: list[str], timeout: float, **kwargs: Any) -> str:
    result = run(args, timeout, **kwargs)
    tail = f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(args)}: exit {result.returncode}\n{tail}"
    return result.stdout


def poll(condition: Callable[[], Any], what: str, timeout: float, every: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Checks:
    """Every check of a phase prints PASS or FAIL with its figure; the test fails at the end
    with all failed ones, so one failure does not hide the figures of the others."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.failed: list[str] = []

    def __call__(self, name: str, passed: bool, figure: str) -> bool:
        line = f"{'PASS' if passed else 'FAIL'} {name}: {figure}"
        self.say(line)
        if not passed:
            self.failed.append(line)
        return passed

    def done(self) -> None:
        assert not self.failed, "\n".join(self.failed)


@dataclass(frozen=True)
class Trial:
    number: int
    state: str
    worker: str | None  # host:pid, the host being the container's hostname
    fail_reason: str | None
    retry_of: int | None  # queued again by a worker's SIGTERM handling
    failed_trial: int | None  # queued again by Optuna's heartbeat (stale trial) retry
    n_params: int
    n_epochs: int


@dataclass(frozen=True)
class Container:
    id: str
    hostname: str
    status: str
    exit_code: int
    restarts: int

    def __str__(self) -> str:
        return f"{self.hostname}:{self.status},exit={self.exit_code},restarts={self.restarts}"


def retries(trials: list[Trial]) -> dict[int, Trial]:
    """The trial that retries each retried trial, by the number of the one it retries."""
    by_origin: dict[int, Trial] = {}
    for t in trials:
        for origin in (t.retry_of, t.failed_trial):
            if origin is not None:
                by_origin.setdefault(origin, t)
    return by_origin


def usage(trials: list[Trial]) -> tuple[int, int, int]:
    """(finished, running, waiting) as regsweep counts its budget: a failed trial that was
    queued again counts once, through its retry."""
    retried = retries(trials)
    finished = sum(
        t.state in FINISHED and not (t.state == "FAIL" and t.number in retried) for t in trials
    )
    running = sum(t.state == "RUNNING" for t in trials)
    return finished, running, sum(t.state == "WAITING" for t in trials)


def states(trials: list[Trial]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no trials"


class Stack:
    """The project's compose stack under a unique project name, driven from the host."""

    def __init__(self, compose: list[str], env_file: Path, values: dict[str, str]) -> None:
        self.project = f"regsweeptest{secrets.token_hex(4)}"
        self.compose = compose
        self.env_file = env_file
        self.values = values
        self.port = int(values["DASHBOARD_PORT"])
        self.phase: dict[str, str] = {}
        self.pg = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
        return {**env, "RS_TEST_MNIST": str(MNIST_T10K), **self.phase}

    def dc(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = ["-f", str(REPO / "docker-compose.yml"), "-f", str(OVERRIDE)]
        base = [*self.compose, "-p", self.project, "--env-file", str(self.env_file), *files]
        return run([*base, *args], timeout, cwd=REPO, env=self.env())

    def dc_ok(self, *args: str, timeout: float = 300) -> str:
        result = self.dc(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"compose {' '.join(args)}: exit {result.returncode}\n{result.stderr[-3000:]}"
        )
        return result.stdout

    def sweep(
        self, study: str, n_trials: int, epochs: int, limit: int, heartbeat: int, grace: int
    ) -> None:
        """The next ``up`` runs the workers on this study and budget (see the override)."""
        self.phase = {
            "RS_TEST_STUDY": study,
            "RS_TEST_N_TRIALS": str(n_trials),
            "RS_TEST_EPOCHS": str(epochs),
            "RS_TEST_LIMIT": str(limit),
            "RS_TEST_HEARTBEAT": str(heartbeat),
            "RS_TEST_GRACE": str(grace),
        }

    def up_workers(self, *extra: str) -> list[str]:
        self.dc_ok("up", "-d", *extra, "--scale", "worker=4", timeout=900)
        self.pg = self.dc_ok("ps", "-q", "postgres").strip()
        workers = self.dc_ok("ps", "-q", "worker").split()
        assert len(workers) == 4, f"{len(workers)} worker containers, not 4"
        return workers

    def psql(self, sql: str) -> str:
        user, db = self.values["POSTGRES_USER"], self.values["POSTGRES_DB"]
        cmd = ["psql", "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-AtX", "-c", sql]
        return ok(["docker", "exec", self.pg, *cmd], 60).strip()

    def trials(self, study: str) -> list[Trial]:
        def attr(table: str, key: str) -> str:
            return (
                f"(select a.value_json from {table} a where a.trial_id = t.trial_id"
                f" and a.key = '{key}')"
            )

        rows = self.psql(
            "select coalesce(json_agg(x order by x.number), '[]') from ("
            " select t.number, t.state::text as state,"
            f" {attr('trial_user_attributes', 'worker')} as worker,"
            f" {attr('trial_user_attributes', 'fail_reason')} as fail_reason,"
            f" {attr('trial_user_attributes', 'retry_of')} as retry_of,"
            f" {attr('trial_system_attributes', 'failed_trial')} as failed_trial,"
            " (select count(*) from trial_params p where p.trial_id = t.trial_id) as n_params,"
            " (select count(*) from trial_intermediate_values v"
            "  where v.trial_id = t.trial_id) as n_epochs"
            " from trials t join studies s on s.study_id = t.study_id"
            f" where s.study_name = '{study}') x"
        )

        def value(raw: str | None) -> Any:
            return None if raw is None else json.loads(raw)

        return [
            Trial(
                r["number"],
                r["state"],
                value(r["worker"]),
                value(r["fail_reason"]),
                value(r["retry_of"]),
                value(r["failed_trial"]),
                r["n_params"],
                r["n_epochs"],
            )
            for r in json.loads(rows or "[]")
        ]

    def studies(self) -> list[str]:
        return self.psql("select study_name from studies order by study_id").split()


def inspect(ids: list[str]) -> list[Container]:
    fmt = "{{.Id}} {{.Config.Hostname}} {{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"
    out = ok(["docker", "inspect", "-f", fmt, *ids], 60)
    return [
        Container(c[0], c[1], c[2], int(c[3]), int(c[4]))
        for c in (ln.split() for ln in out.splitlines())
    ]


def leftovers(project: str) -> dict[str, list[str]]:
    """The project's containers, volumes and networks that still exist."""
    label = f"label=com.docker.compose.project={project}"
    return {
        kind: ok(
            [
                "docker",
                kind,
                "ls",
                *(["-a"] if kind == "container" else []),
                "-q",
                "--filter",
                label,
            ],
            60,
        ).split()
        for kind in ("container", "volume", "network")
    }


def all_exited(ids: list[str]) -> bool:
    return all(c.status == "exited" for c in inspect(ids))


def logs(container: str) -> str:
    result = run(["docker", "logs", container], 60)
    return result.stdout + result.stderr


def log_tails(containers: list[Container], lines: int = 15) -> str:
    """The last lines each container printed, for a check that fails on its exit status:
    the logs are gone with ``down -v``."""
    return "".join(
        f"\n--- last {lines} lines of {c.hostname}:\n"
        + "\n".join(logs(c.id).strip().splitlines()[-lines:])
        for c in containers
    )


# --- images -------------------------------------------------------------------------------


def image_labels(tag: str) -> dict[str, str] | None:
    """The image's labels, or None where no image has that tag."""
    result = run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag], 60)
    return (json.loads(result.stdout) or {}) if result.returncode == 0 else None


def build_base(say: Callable[[str], None]) -> None:
    """A Debian bookworm rootfs from debootstrap, with python3, venv and the host's CAs."""
    if image_labels(BASE) is not None:
        return
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        skip_or_fail("building the stand-in base images needs root and debootstrap")
    sources = " ".join(
        p.read_text()
        for p in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
        if p.is_file()
    )
    # apt's own mirror (the one this machine reaches), from a line that is not a comment.
    found = re.search(r"(?m)^[^#\n]*?(https?://\S+/debian)\b", sources)
    mirror = found.group(1) if found else "http://deb.debian.org/debian"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="regsweep-rootfs-") as root:
        ok(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                root,
                mirror,
            ],
            900,
        )
        # The host's bundle holds the CA of the TLS proxy that pip's and apt's traffic meets.
        shutil.copyfile(HOST_CA, Path(root) / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        try:
            ok(
                ["docker", "import", "--change", f"LABEL {STANDIN}=true", "-", BASE],
                600,
                stdin=tar.stdout,
            )
        finally:
            if tar.stdout is not None:
                tar.stdout.close()  # a failed import must not leave tar blocked on the pipe
            tar.wait(60)
    say(
        f"INFO stand-in base {BASE} from debootstrap ({mirror}): {time.monotonic() - started:.0f} s"
    )


def ensure_standins(say: Callable[[str], None]) -> None:
    """Stand-ins for the base images the project's files name, built only where absent."""
    for tag, folder in (("python:3.11-slim", "python"), ("postgres:16", "postgres")):
        labels = image_labels(tag)
        if labels is not None:
            kind = "a stand-in" if labels.get(STANDIN) == "true" else "not a stand-in"
            say(f"INFO {tag}: present ({kind}), used as it is")
            continue
        build_base(say)
        started = time.monotonic()
        ok(["docker", "build", "-t", tag, str(DOCKER_DIR / "standins" / folder)], 900)
        assert (image_labels(tag) or {}).get(STANDIN) == "true", f"{tag} built without its label"
        say(f"INFO {tag}: stand-in built in {time.monotonic() - started:.0f} s")


def compose_command() -> list[str]:
    if run(["docker", "compose", "version"], 30).returncode == 0:
        return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    if exe is None:
        skip_or_fail("neither `docker compose` nor docker-compose is installed")
    return [str(exe)]


def env_values(folder: Path) -> tuple[Path, dict[str, str]]:
    """.env from .env.example, as the README says, with a random password; TORCH_INDEX
    empty (pip's default index: PyTorch's own is unreachable here)."""
    port = 8080
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            port = free_port()  # 8080 busy: the project file's DASHBOARD_PORT moves it
    text = (REPO / ".env.example").read_text()
    text = re.sub(
        r"(?m)^POSTGRES_PASSWORD=.*$", f"POSTGRES_PASSWORD=t{secrets.token_hex(16)}", text
    )
    text = re.sub(r"(?m)^DASHBOARD_PORT=.*$", f"DASHBOARD_PORT={port}", text)
    text += "\nTORCH_INDEX=\n"
    env_file = folder / ".env"
    env_file.write_text(text)
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return env_file, values


def require_docker() -> None:
    """Skip where Docker is absent (fail under CI=true, where .ci/run starts it)."""
    if shutil.which("docker") is None:
        skip_or_fail("the docker CLI is not installed")
    info = run(["docker", "info"], 60)
    if info.returncode != 0:
        skip_or_fail(f"no Docker daemon: {(info.stderr.strip().splitlines() or ['?'])[-1]}")


# Tests that need the project image (this file's and the Kubernetes one) build it one at a
# time, across pytest-xdist's workers: the second finds every layer cached.
BUILD_LOCK = Path(tempfile.gettempdir()) / "regsweep-image-build.lock"


def build_image(stack: Stack, say: Callable[[str], None]) -> None:
    """regsweep:latest from the project's Dockerfile, as ``docker compose build`` makes it
    (and the base images' stand-ins where their tags are absent)."""
    from filelock import FileLock

    with FileLock(str(BUILD_LOCK)):
        started = time.monotonic()
        ensure_standins(say)
        say(f"INFO base images ready in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        stack.dc_ok("build", "worker", timeout=1500)
        size = int(ok(["docker", "image", "inspect", "-f", "{{.Size}}", "regsweep:latest"], 60))
        took = time.monotonic() - started
        say(f"INFO project image regsweep:latest built in {took:.0f} s, {size / 1e9:.1f} GB")


_said: list[str] = []  # under xdist: this test's figures, until its report carries them


@pytest.fixture(scope="module")
def say(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Figures go straight to the terminal, also when the test passes. An xdist worker has
    no terminal: each test's report carries them to the one that prints (conftest.py)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            _said.append(line)
        elif reporter is None or capture is None:
            print(line)
        else:
            with capture.global_and_fixture_disabled():  # as capsys.disabled() does
                reporter.write_line(line)

    return write


@pytest.fixture(autouse=True)
def _figures_in_the_report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _said:
        request.node.user_properties.append((FIGURES, "\n".join(_said)))
        _said.clear()


@pytest.fixture(scope="module")
def stack(say: Callable[[str], None], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_docker()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if not (MNIST_T10K / name).is_file():
            skip_or_fail(f"real MNIST test set not found in {MNIST_T10K}")
    env_file, values = env_values(tmp_path_factory.mktemp("compose"))
    s = Stack(compose_command(), env_file, values)
    s.sweep("mnist", 12, 2, 2000, 20, 120)  # compose needs the override's variables set
    try:
        build_image(s, say)
        yield s
    finally:
        # Also after a failure: compose first, then whatever it could not remove.
        s.dc("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)
        for kind, ids in leftovers(s.project).items():
            if ids:
                force = [] if kind == "network" else ["-f"]
                run(["docker", kind, "rm", *force, *ids], 120)


def test_image_is_built_from_the_project_dockerfile(
    stack: Stack, say: Callable[[str], None]
) -> None:
    check = Checks(say)
    out = ok(
        [
            "docker",
            "run",
            "--rm",
            "regsweep:latest",
            "sh",
            "-c",
            "ls -d /app/build 2>&1; id -un;"
            " python -c 'import torch, regsweep; print(torch.__version__)'",
        ],
        180,
    )
    lines = out.split()
    check("no setuptools build/ in the image", "No such file" in out, out.splitlines()[0])
    check(
        "runs as regsweep, torch imports",
        "regsweep" in lines and bool(lines[-1]),
        " ".join(lines[-2:]),
    )
    check.done()


def test_four_workers_share_one_study_and_its_exact_budget(
    stack: Stack, say: Callable[[str], None]
) -> None:
    check = Checks(say)
    n = 12
    stack.sweep("mnist", n, 2, 2000, 20, 120)
    started = time.time()
    workers = stack.up_workers("--build")
    say(f"INFO up -d --build --scale worker=4: {time.time() - started:.0f} s")
    poll(lambda: all_exited(workers), "the 4 workers to finish the budget", 480)
    time.sleep(5)  # a restart policy would have acted by now
    trials = stack.trials("mnist")
    first = stack.psql(
        "select extract(epoch from min(t.datetime_start)) from trials t"
        " join studies s on s.study_id = t.study_id where s.study_name = 'mnist'"
    )
    first_after = float(first or 0) - started
    say(f"INFO first trial {first_after:.0f} s after up, all done {time.time() - started:.0f} s")

    containers = inspect(workers)
    hosts = {c.hostname for c in containers}
    per_worker: dict[str, int] = {}
    for t in trials:
        host = (t.worker or "?").split(":")[0]
        per_worker[host] = per_worker.get(host, 0) + 1
    check("one study", stack.studies() == ["mnist"], f"studies in the database: {stack.studies()}")
    check(
        "all 4 workers ran trials",
        set(per_worker) == hosts and len(hosts) == 4,
        f"trials per container: {per_worker}",
    )
    check(
        "budget met exactly",
        len(trials) == n and usage(trials) == (n, 0, 0),
        f"{len(trials)} trials for a budget of {n}: {states(trials)}",
    )
    check(
        "every worker exits 0, not restarted",
        all(c.exit_code == 0 and c.restarts == 0 for c in containers),
        " ".join(map(str, containers))
        + log_tails([c for c in containers if not (c.exit_code == 0 and c.restarts == 0)]),
    )
    url = f"http://127.0.0.1:{stack.port}"
    listed = json.loads(http_get(f"{url}/api/studies") or b"{}").get("study_summaries", [])
    names = [s["study_name"] for s in listed]
    shown = 0
    if names == ["mnist"]:
        detail = http_get(f"{url}/api/studies/{listed[0]['study_id']}?after=0") or b"{}"
        shown = len(json.loads(detail).get("trials", []))
    check(
        f"dashboard answers on {url}",
        names == ["mnist"] and shown == n,
        f"/api/studies: {names}, {shown} trials",
    )
    dash = logs(stack.dc_ok("ps", "-q", "dashboard").strip())
    check(
        "dashboard names where it is published, no false warning",
        f"at http://127.0.0.1:{stack.port}/dashboard/" in dash and "warning:" not in dash,
        dash.strip().splitlines()[0] if dash.strip() else "no output",
    )
    check.done()


def sigterm_checks(
    check: Checks, stack: Stack, study: str, workers: list[str], took: float, mid_trial: bool
) -> list[Trial]:
    """What ``docker compose stop worker`` must leave, in any phase (``mid_trial``: the
    test saw every worker in a trial, so some trial must have been interrupted)."""
    trials = stack.trials(study)
    running = [t.number for t in trials if t.state == "RUNNING"]
    check("nothing RUNNING after stop", not running, f"{states(trials)}; RUNNING: {running}")
    interrupted = [t for t in trials if t.state == "FAIL" and t.fail_reason == SIGTERM_REASON]
    retried = retries(trials)
    lost = [t.number for t in interrupted if t.number not in retried]
    check(
        "every interrupted trial queued again",
        (bool(interrupted) or not mid_trial) and not lost,
        f"{len(interrupted)} failed '{SIGTERM_REASON}' "
        f"({sum(t.n_params == 0 for t in interrupted)} before their first parameter); "
        f"not queued again: {lost}",
    )
    no_reason = [t.number for t in trials if t.state == "FAIL" and not t.fail_reason]
    check("every FAIL trial has a fail_reason", not no_reason, f"without one: {no_reason}")
    containers = inspect(workers)
    odd = [c for c in containers if not (c.exit_code == 143 and c.restarts == 0)]
    check(
        "workers exit 143 (SIGTERM), not restarted",
        not odd,
        f"stop took {took:.0f} s; " + " ".join(map(str, containers)) + log_tails(odd),
    )
    # A worker that had no trial running must not say it failed and queued one.
    saying = sum(IDLE_MESSAGE in logs(w) for w in workers)
    check(
        "only workers that had a trial say they queued it again",
        saying <= len(interrupted),
        f"{saying} workers printed '{IDLE_MESSAGE}', {len(interrupted)} trials were interrupted",
    )
    return trials


def test_stop_mid_trial_leaves_nothing_running_and_requeues(
    stack: Stack, say: Callable[[str], None]
) -> None:
    check = Checks(say)
    study = "sigterm-long"
    stack.sweep(study, 200, 30, 10000, 20, 120)
    workers = stack.up_workers()

    def four_mid_trial() -> list[Trial]:
        running = [t for t in stack.trials(study) if t.state == "RUNNING" and t.n_epochs >= 1]
        return running if len(running) == 4 else []

    before = poll(four_mid_trial, "4 trials each 1 epoch or more into training", 300)
    say(f"INFO before stop: RUNNING trial:epochs {[f'{t.number}:{t.n_epochs}' for t in before]}")
    started = time.monotonic()
    stack.dc_ok("stop", "worker", timeout=120)
    trials = sigterm_checks(check, stack, study, workers, time.monotonic() - started, True)
    now = {t.number: t.state for t in trials}
    check(
        "the trials running at stop are finished",
        all(now[t.number] in FINISHED for t in before),
        f"{ {t.number: now[t.number] for t in before} }",
    )
    check.done()


def test_stop_with_one_epoch_trials_requeues_every_interrupted_trial(
    stack: Stack, say: Callable[[str], None]
) -> None:
    """Workers spend much of their time in ask and tell: SIGTERM often lands there."""
    check = Checks(say)
    study = "sigterm-short"
    stack.sweep(study, 100000, 1, 400, 20, 120)
    workers = stack.up_workers()

    def many_done() -> bool:
        return sum(t.state in ("COMPLETE", "PRUNED") for t in stack.trials(study)) >= 30

    poll(many_done, "30 one-epoch trials", 300)
    started = time.monotonic()
    stack.dc_ok("stop", "worker", timeout=120)
    sigterm_checks(check, stack, study, workers, time.monotonic() - started, False)
    check.done()


def test_killed_and_crashed_workers_trials_are_retried_within_the_budget(
    stack: Stack, say: Callable[[str], None]
) -> None:
    """One worker is ``docker kill``ed, another's regsweep process crashes (SIGSEGV from
    inside its container): heartbeats (every 2 s, 10 s grace here) fail both trials, the
    others retry them, on-failure restarts the crashed one, and the budget stays exact."""
    check = Checks(say)
    study, n = "killed", 8
    stack.sweep(study, n, 10, 4000, 2, 10)
    workers = stack.up_workers()
    by_host = {c.hostname: c.id for c in inspect(workers)}

    def two_victims() -> list[Trial]:
        mid = [
            t
            for t in stack.trials(study)
            if t.state == "RUNNING" and t.n_epochs >= 1 and t.worker is not None
        ]
        distinct = {t.worker.split(":")[0]: t for t in mid if t.worker}
        return list(distinct.values())[:2] if len(distinct) >= 2 else []

    killed, crashed = poll(two_victims, "2 workers each 1 epoch into a trial", 300, every=1)
    killed_c = by_host[(killed.worker or "").split(":")[0]]
    crashed_c = by_host[(crashed.worker or "").split(":")[0]]
    ok(["docker", "kill", killed_c], 60)
    # PID 1 is compose's init (init: true); its one child is regsweep. A segfault is a crash
    # no Python handler sees, and the container exits non-zero: on-failure restarts it.
    victim = ok(
        [
            "docker",
            "exec",
            crashed_c,
            "sh",
            "-c",
            'set -- $(cat /proc/1/task/1/children); tr "\\0" " " </proc/$1/cmdline;'
            " kill -s SEGV $1",
        ],
        60,
    )
    say(f"INFO killed trial {killed.number} ({killed.worker}) with docker kill")
    cmdline = victim.strip()[:60]
    say(f"INFO crashed trial {crashed.number} ({crashed.worker}): SIGSEGV to {cmdline!r}...")
    check("the crashed process is regsweep's worker", "regsweep worker" in victim, cmdline)

    def done() -> bool:
        cs = {c.id: c for c in inspect(workers)}
        return all(c.status == "exited" for c in cs.values()) and cs[crashed_c].restarts >= 1

    poll(done, "the workers to finish the budget (the crashed one restarted)", 480)
    time.sleep(5)
    trials = stack.trials(study)
    by_number = {t.number: t for t in trials}
    retried = retries(trials)
    for what, t in (("killed", killed), ("crashed", crashed)):
        retry = retried.get(t.number)
        figure = f"trial {t.number} {by_number[t.number].state}; retry: " + (
            f"trial {retry.number} {retry.state} on {retry.worker}" if retry else "none"
        )
        passed = (
            by_number[t.number].state == "FAIL"
            and retry is not None
            and retry.state in ("COMPLETE", "PRUNED")
        )
        if what == "killed":  # the killed container is not restarted: another one ran it
            passed = (
                passed
                and retry is not None
                and not (retry.worker or "").startswith((t.worker or "?").split(":")[0])
            )
        check(f"{what} worker's trial failed and retried", passed, figure)
    check(
        "budget exact",
        usage(trials) == (n, 0, 0) and len(trials) == n + len(retried),
        f"finished/running/waiting {usage(trials)} for a budget of {n}; {states(trials)}",
    )
    cs = {c.id: c for c in inspect(workers)}
    others = [c for c in cs.values() if c.id not in (killed_c, crashed_c)]
    check(
        "killed worker exit 137, not restarted",
        cs[killed_c].exit_code == 137 and cs[killed_c].restarts == 0,
        str(cs[killed_c]),
    )
    joined = logs(crashed_c).count(f"study {study} on ")
    check(
        "crashed worker restarted by on-failure, rejoined and finished",
        cs[crashed_c].restarts >= 1 and cs[crashed_c].exit_code == 0 and joined >= 2,
        f"{cs[crashed_c]}; joined the study {joined} times",
    )
    check(
        "other workers exit 0, not restarted",
        all(c.exit_code == 0 and c.restarts == 0 for c in others),
        " ".join(map(str, others))
        + log_tails([c for c in others if not (c.exit_code == 0 and c.restarts == 0)]),
    )
    no_reason = [t.number for t in trials if t.state == "FAIL" and not t.fail_reason]
    check("every FAIL trial has a fail_reason", not no_reason, f"without one: {no_reason}")
    check.done()


def test_down_v_leaves_nothing_of_the_project(stack: Stack, say: Callable[[str], None]) -> None:
    check = Checks(say)
    started = time.monotonic()
    stack.dc_ok("down", "-v", "--remove-orphans", timeout=180)
    left = leftovers(stack.project)
    check(
        "down -v leaves no container, volume or network",
        not any(left.values()),
        f"{time.monotonic() - started:.0f} s; left: { {k: len(v) for k, v in left.items()} }",
    )
    check(
        "dashboard gone",
        http_get(f"http://127.0.0.1:{stack.port}/api/studies") is None,
        f"127.0.0.1:{stack.port}",
    )
    check.done()
