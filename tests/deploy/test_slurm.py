"""``regsweep slurm`` on a real one-node Slurm cluster, against the real PostgreSQL.

The module's fixture starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian's
``slurm-wlm`` and ``munge``) from a config in a temporary folder; the clients find it
through ``SLURM_CONF``. Then real job arrays of ``regsweep worker`` run: the budget on one
study, ``scancel`` of a task mid-trial, ``scancel --signal=KILL --batch`` (recovered by
heartbeat), ``scontrol requeue`` (the task rejoins), and tasks that reach their time limit,
with and without ``--signal``'s early SIGTERM. Every wait is bounded, and the cluster and
every process it started are gone at the end, also after a failure.

Needs root (SlurmUser=root) and the packages; skipped without them, except under CI=true,
where ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from regsweep.sweep.budget import retried_number, usage
from tests.conftest import IdxData, idx_sweep, run_cli, skip_or_fail
from tests.processes import StudyWatch, free_port, unique_name, wait_until
from tests.sweep.test_workers import with_secret

pytestmark = [pytest.mark.slurm, pytest.mark.postgres, pytest.mark.timeout(1500)]

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
SIGTERM_REASON = "terminated (SIGTERM)"
# Heartbeats every second, a trial silent for 6 s is dead: fast recovery, with room for a
# live worker's late beat on two busy cores.
HEARTBEAT_S, GRACE_S = 1, 6
# Trials this long (a second or more on tiny data) leave time to signal a task mid-trial.
LONG_EPOCHS = 400
DEADLINE_S = 420.0


@dataclass
class Cluster:
    folder: Path
    conf: Path
    node: str
    daemons: dict[str, subprocess.Popen[bytes]]

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            list(args),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
        return result.stdout + result.stderr

    def tasks(self, job: str) -> dict[int, dict[str, str]]:
        """Each array task of ``job`` as ``scontrol show job``'s fields, by task id."""
        text = self.run("scontrol", "show", "job", "-o", job, check=False)
        tasks = {}
        for line in text.splitlines():
            fields = dict(re.findall(r"(\S+?)=(\S*)", line))
            if "ArrayTaskId" in fields and fields["ArrayTaskId"].isdigit():
                tasks[int(fields["ArrayTaskId"])] = fields
        return tasks

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((self.folder / "log").glob("*"))
        )


def _strays(conf: Path) -> list[int]:
    """Processes started under this cluster (the daemons' and jobs' environment names it)."""
    marker = f"SLURM_CONF={conf}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def _config(folder: Path, node: str, socket_path: Path) -> str:
    ctld, slurmd = free_port(), free_port()
    return f"""\
ClusterName=regsweeptest
SlurmctldHost={node}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Finished tasks stay visible to scontrol for the checks.
MinJobAge=900
# Slurm's default: SIGKILL this long after a task's SIGTERM.
KillWait=30
OverTimeLimit=0
# Four single-CPU workers at once on this 2-core machine: the node is declared, not probed.
SlurmdParameters=config_overrides
NodeName={node} CPUs=4 RealMemory=2048 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = [c for c in (*DAEMONS, *CLIENTS) if shutil.which(c) is None]
    if missing:
        skip_or_fail(
            f"Slurm is not installed ({', '.join(missing)} missing): "
            "apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        skip_or_fail("the one-node Slurm cluster runs its daemons as root (SlurmUser=root)")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "munge"):
        (folder / sub).mkdir()
    os.chmod(folder / "munge", 0o711)  # munged: its socket's folder must be searchable
    key = folder / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    sock = folder / "munge" / "munge.socket"
    node = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, node, sock))
    cluster = Cluster(folder, conf, node, {})
    env = {**os.environ, **cluster.env}
    try:
        munge = [
            "munged",
            "--foreground",
            "--force",  # as root
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={folder}/munge/munged.pid",
            f"--log-file={folder}/log/munged.log",
            f"--seed-file={folder}/munge/munged.seed",
        ]
        for name, args in (
            ("munged", munge),
            ("slurmctld", ["slurmctld", "-D", "-c"]),
            ("slurmd", ["slurmd", "-D"]),
        ):
            with (folder / "log" / f"{name}.out").open("wb") as out:
                cluster.daemons[name] = subprocess.Popen(
                    args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            if name == "munged":
                wait_until(sock.exists, "munged's socket", timeout=30)

        def idle() -> bool:
            for name, process in cluster.daemons.items():
                assert process.poll() is None, f"{name} exited:\n{cluster.logs()}"
            state = cluster.run("sinfo", "-h", "-o", "%T", check=False).strip()
            return state == "idle"

        wait_until(idle, "the node to be idle", timeout=120)
        yield cluster
    finally:
        if "slurmctld" in cluster.daemons:
            cluster.run("scancel", "--full", "--user=root", check=False)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if not cluster.run("squeue", "-h", check=False).strip():
                    break
                time.sleep(1)
        for name in reversed(list(cluster.daemons)):
            _stop(cluster.daemons[name])
        for pid in _strays(conf):  # a job's processes that outlived the cancel
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        left = _strays(conf)
        assert not left, f"processes of the test cluster still running: {left}"


@pytest.fixture
def study(postgres_url: str) -> Iterator[StudyWatch]:
    watch = StudyWatch(with_secret(postgres_url), unique_name("slurm"))
    yield watch
    watch.delete()


def write_sweep(data: IdxData, folder: Path, study: StudyWatch, *, epochs: int) -> Path:
    """The sweep file names no database: the URL, with its password, reaches the tasks
    only through REGSWEEP_STORAGE in sbatch's environment (checked below)."""
    raw = idx_sweep(
        data,
        folder,
        study={
            "name": study.name,
            "storage": "sqlite:///not-this-one.db",
            "n_trials": 4,
            "pruner": "none",
            "heartbeat_interval": HEARTBEAT_S,
            "grace_period": GRACE_S,
        },
        train={"max_epochs": epochs},
        search_space={"patience": 1000},
    )
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def submit(cluster: Cluster, sweep: Path, study: StudyWatch, script: str, *args: str) -> str:
    """``regsweep slurm ... -o SCRIPT --submit``; returns the job id."""
    result = run_cli(
        "slurm",
        sweep,
        *args,
        "-o",
        sweep.parent / script,
        "--submit",
        cwd=sweep.parent,
        env={**cluster.env, "REGSWEEP_STORAGE": study.url},
        timeout=180,
    )
    assert result.code == 0, result.stderr + result.stdout
    found = re.search(r"submitted job array (\d+)", result.stdout)
    assert found, result.stdout
    job = found[1]
    assert f"scancel {job}" in result.stdout and f"squeue -j {job}" in result.stdout
    assert "regsweep watch" in result.stdout
    return job


def wait_done(cluster: Cluster, job: str, count: int, timeout: float = DEADLINE_S) -> None:
    def done() -> bool:
        tasks = cluster.tasks(job)
        pending = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED")
        return len(tasks) == count and all(t["JobState"] not in pending for t in tasks.values())

    try:
        wait_until(done, f"job {job}'s {count} tasks to end", timeout=timeout)
    except AssertionError:
        raise AssertionError(
            f"{cluster.tasks(job)}\n{task_logs(cluster, job)}\n{cluster.logs()}"
        ) from None


def task_log(cluster: Cluster, job: str, task: int) -> str:
    fields = cluster.tasks(job)[task]
    return Path(fields["StdOut"]).read_text(errors="replace")


def task_logs(cluster: Cluster, job: str) -> str:
    return "\n".join(
        f"--- task {k}:\n{task_log(cluster, job, k)[-2000:]}" for k in cluster.tasks(job)
    )


def running_in(study: StudyWatch, task: str, restarts: int = 0) -> FrozenTrial | None:
    """The trial array task ``task`` (``JOB_K``) runs, once it is an epoch in."""
    for trial in study.trials():
        attrs = trial.user_attrs
        if (
            trial.state == TrialState.RUNNING
            and attrs.get("slurm_job") == task
            and attrs.get("slurm_restarts") == restarts
            and 1 <= len(trial.intermediate_values) < LONG_EPOCHS // 2
        ):
            return trial
    return None


def by_number(study: StudyWatch) -> dict[int, FrozenTrial]:
    return {t.number: t for t in study.trials()}


def retry_of(trials: dict[int, FrozenTrial], number: int) -> FrozenTrial | None:
    return next((t for t in trials.values() if retried_number(t) == number), None)


def last_retry(trials: dict[int, FrozenTrial], number: int) -> FrozenTrial | None:
    """The last trial of ``number``'s chain of retries (a retry can be interrupted too)."""
    retry = retry_of(trials, number)
    while retry is not None and (after := retry_of(trials, retry.number)) is not None:
        retry = after
    return retry


def assert_budget_exact(study: StudyWatch, n_trials: int) -> None:
    trials = study.trials()
    states = sorted(t.state.name for t in trials)
    assert "RUNNING" not in states and "WAITING" not in states, states
    stored = optuna.load_study(study_name=study.name, storage=study.storage)
    assert usage(stored).finished == n_trials, states


def requeued_numbers(log: str) -> list[int]:
    """The trials a worker's last line says it failed and queued again."""
    found = re.findall(r"terminated \(SIGTERM\): trials? ([\d, ]+) marked failed", log)
    return [int(n) for group in found for n in group.split(",")]


def assert_clean_logs(cluster: Cluster, job: str, secret: str | None) -> None:
    for task in cluster.tasks(job):
        text = task_log(cluster, job, task)
        assert "Traceback" not in text, text
        if secret:
            assert secret not in text, text


def test_an_array_of_three_workers_makes_one_study_and_meets_its_budget(
    cluster: Cluster, study: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    n_trials = 6
    sweep = write_sweep(tiny_idx, tmp_path, study, epochs=3)
    job = submit(
        cluster,
        sweep,
        study,
        "budget.sbatch",
        "--workers=3",
        f"--n-trials={n_trials}",
        "--partition=debug",
        "--time=10",
        "--mem=200M",
        "--account=regsweep-lab",
        "--sbatch-option=--comment=regsweep-test",
        "--requeue",
        "--signal=60",
    )
    wait_done(cluster, job, 3)
    # The script's options are the submitted job's (scontrol keeps ended tasks).
    fields = cluster.tasks(job)
    assert sorted(fields) == [0, 1, 2], fields
    for task, f in fields.items():
        assert f["ArrayJobId"] == job
        assert f["JobName"] == f"regsweep-{study.name}"
        assert f["Partition"] == "debug"
        assert f["TimeLimit"] == "00:10:00"
        assert f["MinMemoryNode"] == "200M"
        assert f["Account"] == "regsweep-lab"
        assert f["Comment"] == "regsweep-test"
        assert f["Requeue"] == "1"
        assert f["Command"] == str(tmp_path / "budget.sbatch")
        assert f["WorkDir"] == str(tmp_path)
        assert f["StdOut"] == str(tmp_path / f"regsweep-{study.name}-{job}_{task}.log")
    script = (tmp_path / "budget.sbatch").read_text()
    assert "#SBATCH --signal=B:TERM@60" in script and "#SBATCH --cpus-per-task=1" in script

    tasks = cluster.tasks(job)
    assert all(t["JobState"] == "COMPLETED" for t in tasks.values()), tasks
    assert all(t["ExitCode"] == "0:0" for t in tasks.values()), tasks
    assert_budget_exact(study, n_trials)
    trials = study.trials()
    assert len(trials) == n_trials and all(t.state == TrialState.COMPLETE for t in trials)
    ran = {t.user_attrs["slurm_job"] for t in trials}
    assert ran <= {f"{job}_{k}" for k in range(3)}, ran
    ids = {t["JobId"] for t in tasks.values()}
    assert {t.user_attrs["slurm_job_id"] for t in trials} <= ids
    assert {t.user_attrs["slurm_restarts"] for t in trials} == {0}
    # One study: every task joined the same one, none made its own.
    names = optuna.get_all_study_names(study.storage)
    assert names.count(study.name) == 1
    for task in range(3):
        assert f"study {study.name} on" in task_log(cluster, job, task)
    secret = make_url(study.url).password
    assert_clean_logs(cluster, job, secret)
    if secret:
        assert secret not in script
        assert secret not in cluster.run("scontrol", "show", "job", job)
        assert secret not in cluster.run("squeue", "-j", job, "-o", "%all")


def test_cancel_kill_and_requeue_of_array_tasks_keep_the_budget_exact(
    cluster: Cluster, study: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    """Four tasks: 3 is requeued by scontrol and rejoins, 0 is cancelled, 2 is killed
    outright; 1 and the requeued 3 finish the budget, the killed task's trial retried by
    heartbeat."""
    n_trials = 8
    sweep = write_sweep(tiny_idx, tmp_path, study, epochs=LONG_EPOCHS)
    job = submit(cluster, sweep, study, "faults.sbatch", "--workers=4", f"--n-trials={n_trials}")
    secret = make_url(study.url).password

    def mid_trial(task: int) -> FrozenTrial:
        found: FrozenTrial = wait_until(
            lambda: running_in(study, f"{job}_{task}"),
            f"task {task} to be inside a trial",
            timeout=DEADLINE_S,
        )
        return found

    # The password reached the worker through its environment, not its command line.
    first = mid_trial(1)
    pid = int(first.user_attrs["worker"].split(":")[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "regsweep worker" in cmdline, cmdline
    assert f"REGSWEEP_STORAGE={study.url}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    if secret:
        assert secret not in cmdline

    requeued = mid_trial(3)
    cluster.run("scontrol", "requeue", f"{job}_3")
    wait_until(
        lambda: cluster.tasks(job)[3]["JobState"] == "PENDING", "task 3 requeued", timeout=120
    )
    # A requeued task waits two minutes (its BeginTime) before it may start again. Its
    # first run must be gone first: slurmd revokes that run's credential with a one-second
    # resolution, and a new launch within that second is killed as "Job credential revoked".
    gone = int(requeued.user_attrs["worker"].split(":")[1])
    wait_until(lambda: not Path(f"/proc/{gone}").exists(), "task 3's first run to exit", timeout=60)
    time.sleep(2)
    cluster.run("scontrol", "update", f"JobId={job}_3", "StartTime=now")

    cancelled = mid_trial(0)
    cluster.run("scancel", f"{job}_0")
    killed = mid_trial(2)
    # --batch: SIGKILL to the worker itself; a plain `scancel --signal=KILL` is a cancel,
    # which sends SIGTERM first.
    cluster.run("scancel", "--signal=KILL", "--batch", f"{job}_2")

    wait_done(cluster, job, 4)
    tasks = cluster.tasks(job)
    states = {k: (t["JobState"], t["ExitCode"], t["Restarts"]) for k, t in tasks.items()}
    assert states[0] == ("CANCELLED", "143:0", "0"), states  # the worker's own exit 143
    assert states[1] == ("COMPLETED", "0:0", "0"), states
    assert states[2][1] == "0:9", states  # killed by SIGKILL, no exit of its own
    assert states[3] == ("COMPLETED", "0:0", "1"), states  # requeued once, then done

    assert_budget_exact(study, n_trials)
    trials = by_number(study)
    for what, trial in (("cancelled", cancelled), ("requeued", requeued)):
        dead = trials[trial.number]
        assert dead.state == TrialState.FAIL, (what, dead)
        assert dead.user_attrs["fail_reason"] == SIGTERM_REASON, (what, dead.user_attrs)
        # Its retry may itself be taken by a task cancelled or killed next: the chain ends
        # in a completed trial.
        retry = last_retry(trials, trial.number)
        assert retry is not None and retry.state == TrialState.COMPLETE, (what, retry)
        assert retry.params == dead.params
    assert cancelled.number in requeued_numbers(task_log(cluster, job, 0))

    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"].startswith("its worker sent no heartbeat"), dead
    retry = last_retry(trials, killed.number)
    assert retry is not None and retry.state == TrialState.COMPLETE, retry
    assert retry.params == dead.params
    # A retry that completed does not carry its parent's fail_reason (optuna-dashboard).
    assert "fail_reason" not in retry.user_attrs, retry.user_attrs

    # The requeued task rejoined the study: its log has both runs, the second trained.
    log3 = task_log(cluster, job, 3)
    assert log3.count(f"study {study.name} on") == 2, log3
    assert requeued.number in requeued_numbers(log3)
    rejoined = [
        t
        for t in trials.values()
        if t.user_attrs.get("slurm_job") == f"{job}_3" and t.user_attrs.get("slurm_restarts") == 1
    ]
    assert any(t.state == TrialState.COMPLETE for t in rejoined), rejoined
    assert_clean_logs(cluster, job, secret)


def test_tasks_that_reach_their_time_limit_requeue_their_trials(
    cluster: Cluster, study: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    """Two tasks get --signal's SIGTERM 30 s (up to a minute, Slurm's resolution) before
    their 2-minute limit; one has no early signal and meets its 1-minute limit. Each
    fails and queues again the trial it holds; a second array then runs exactly those."""
    sweep = write_sweep(tiny_idx, tmp_path, study, epochs=LONG_EPOCHS)
    endless = "--n-trials=100000"  # the budget outlasts the time limits
    warned = submit(
        cluster, sweep, study, "warned.sbatch", "--workers=2", endless, "--time=2", "--signal=30"
    )
    limited = submit(
        cluster, sweep, study, "limited.sbatch", "--workers=1", endless, "--time=1", "--signal=0"
    )
    assert "#SBATCH --signal" not in (tmp_path / "limited.sbatch").read_text()
    wait_done(cluster, warned, 2, timeout=300)
    wait_done(cluster, limited, 1, timeout=300)

    ended = {
        (job, k): (t["JobState"], t["ExitCode"])
        for job in (warned, limited)
        for k, t in cluster.tasks(job).items()
    }
    # Warned: SIGTERM before the limit, the worker exits 143 by itself. Limited: Slurm's
    # own SIGTERM at the limit.
    assert ended[(warned, 0)] == ended[(warned, 1)] == ("FAILED", "143:0"), ended
    assert ended[(limited, 0)] == ("TIMEOUT", "143:0"), ended

    trials = by_number(study)
    assert not [t.number for t in trials.values() if t.state == TrialState.RUNNING]
    held = []
    for job, k in ended:
        numbers = requeued_numbers(task_log(cluster, job, k))
        assert len(numbers) == 1, task_log(cluster, job, k)  # mid-trial at its limit
        held += numbers
    ends = set()
    for number in held:
        assert trials[number].state == TrialState.FAIL
        assert trials[number].user_attrs["fail_reason"] == SIGTERM_REASON
        # Queued again; a worker whose limit came a period later may have taken the
        # retry and queued it again in turn.
        end = last_retry(trials, number)
        assert end is not None and end.state == TrialState.WAITING, end
        ends.add(end.number)

    # The others finish the budget exactly: a budget of what the study holds now runs the
    # queued trials and nothing more.
    stored = optuna.load_study(study_name=study.name, storage=study.storage)
    now = usage(stored)
    assert now.running == 0 and now.waiting == len(ends), (now, ends)
    budget = now.used
    rest = submit(cluster, sweep, study, "rest.sbatch", "--workers=2", f"--n-trials={budget}")
    wait_done(cluster, rest, 2)
    assert all(t["JobState"] == "COMPLETED" for t in cluster.tasks(rest).values())
    assert_budget_exact(study, budget)
    trials = by_number(study)
    for number in held:
        end = last_retry(trials, number)
        assert end is not None and end.state == TrialState.COMPLETE, end
    for job in (warned, limited, rest):
        assert_clean_logs(cluster, job, None)


def test_sqlite_pinned_to_one_node_runs(
    cluster: Cluster, tiny_idx: IdxData, tmp_path: Path
) -> None:
    """SQLite is refused on a cluster unless every task runs on one node (--nodelist)."""
    raw: dict[str, Any] = idx_sweep(
        tiny_idx,
        tmp_path,
        study={"name": "pinned", "n_trials": 4, "pruner": "none"},
        train={"max_epochs": 2},
    )
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw, sort_keys=False))
    refused = run_cli("slurm", sweep, "--workers=2", "--submit", cwd=tmp_path, env=cluster.env)
    assert refused.code == 2 and "SQLite" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    result = run_cli(
        "slurm",
        sweep,
        "--workers=2",
        f"--nodelist={cluster.node}",
        "--submit",
        cwd=tmp_path,
        env=cluster.env,
        timeout=180,
    )
    assert result.code == 0, result.stderr
    job = re.search(r"submitted job array (\d+)", result.stdout)[1]  # type: ignore[index]
    wait_done(cluster, job, 2)
    assert all(t["NodeList"] == cluster.node for t in cluster.tasks(job).values())
    watch = StudyWatch(f"sqlite:///{tmp_path / 'study.db'}", "pinned")
    assert_budget_exact(watch, 4)
