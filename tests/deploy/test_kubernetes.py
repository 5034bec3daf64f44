"""``regsweep kubernetes``: every manifest passes the Kubernetes API's schemas (strict), and
says what the README promises: PostgreSQL on a volume, the sweep as a ConfigMap, the
password only in a Secret, the workers as an Indexed Job, the dashboard inside the cluster.

No Kubernetes cluster runs here; test_kubernetes_docker.py runs the worker container of
the Job for real under Docker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from regsweep.storage.rdb import MAX_CONNECTIONS_PER_WORKER
from tests.conftest import IdxData, idx_sweep, run_cli_here

# A current Kubernetes release, as kubernetes-validate ships its schemas.
KUBERNETES_VERSION = "1.37.0"
SECRET_PASSWORD = "n0t-in-any-manifest"

VARIANTS = {
    "in-cluster database": [],
    "managed database, GPUs, packed": [
        "--external-database",
        "--gpus-per-worker=1",
        "--pack=4",
        "--cpus-per-worker=4",
        "--mem=8Gi",
    ],
}


def generate(sweep: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    result = run_cli_here(
        "kubernetes",
        sweep,
        "--workers=5",
        "--image=registry.example/regsweep:1.0",
        "--study=k8s-study",
        "--n-trials=40",
        "--set=train.max_epochs=3",
        *args,
        env={"REGSWEEP_STORAGE": f"postgresql+psycopg://u:{SECRET_PASSWORD}@db:5432/x"},
    )
    assert result.code == 0, result.stderr
    return result.stdout, [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture
def sweep(tiny_idx: IdxData, tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(idx_sweep(tiny_idx, tmp_path), sort_keys=False))
    return path


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


@pytest.mark.parametrize("args", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_manifest_passes_the_api_schemas_strictly(sweep: Path, args: list[str]) -> None:
    _, docs = generate(sweep, *args)
    assert docs
    for doc in docs:
        # Raises ValidationError (unknown fields too, in strict mode) or a missing schema.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_manifests_hold_what_the_readme_says(sweep: Path) -> None:
    text, docs = generate(sweep)
    kinds = by_kind(docs)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Job", "Service", "StatefulSet"]
    assert SECRET_PASSWORD not in text  # the password is only ever in the Secret

    (postgres,) = kinds["StatefulSet"]
    claim = postgres["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    pg = postgres["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in pg["volumeMounts"]
    password = next(e for e in pg["env"] if e["name"] == "POSTGRES_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "regsweep-db", "key": "password"}
    connections = int(pg["args"][1].split("=")[1])
    assert pg["args"][0] == "-c" and connections >= 5 * MAX_CONNECTIONS_PER_WORKER

    (config_map,) = kinds["ConfigMap"]
    assert config_map["data"]["sweep.yaml"] == sweep.read_text()

    (job,) = kinds["Job"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == 5
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["terminationGracePeriodSeconds"] >= 60  # SIGTERM's clean-up, then SIGKILL
    (worker,) = pod["containers"]
    assert worker["image"] == "registry.example/regsweep:1.0"
    assert worker["command"][:3] == ["regsweep", "worker", "/etc/regsweep/sweep.yaml"]
    assert "--study" in worker["command"] and "k8s-study" in worker["command"]
    assert "train.max_epochs=3" in worker["command"]
    assert worker["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    assert worker["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in worker["env"]}
    assert "$(REGSWEEP_DB_PASSWORD)@regsweep-postgres:5432" in env["REGSWEEP_STORAGE"]["value"]
    mounted = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounted["sweep"] == "/etc/regsweep"
    assert volumes["sweep"]["configMap"]["name"] == config_map["metadata"]["name"]

    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    dashboard = services["regsweep-dashboard"]
    assert dashboard["spec"]["type"] == "ClusterIP"  # port-forward only, never exposed
    for service in services.values():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert all("nodePort" not in port for port in service["spec"]["ports"])
    (deployment,) = kinds["Deployment"]
    (dash,) = deployment["spec"]["template"]["spec"]["containers"]
    assert dash["command"][:2] == ["regsweep", "dashboard"]
    assert {"name": "REGSWEEP_DASHBOARD_PUBLISHED", "value": "127.0.0.1:8080"} in dash["env"]

    # The file's first lines say how to make the Secret and apply it.
    assert "kubectl create secret generic regsweep-db" in text.splitlines()[1]
    assert "kubectl port-forward service/regsweep-dashboard 8080" in text


def test_a_managed_database_and_gpus(sweep: Path) -> None:
    _, docs = generate(sweep, *VARIANTS["managed database, GPUs, packed"])
    kinds = by_kind(docs)
    assert "StatefulSet" not in kinds
    assert [s["metadata"]["name"] for s in kinds["Service"]] == ["regsweep-dashboard"]
    (worker,) = kinds["Job"][0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in worker["env"]}
    storage = env["REGSWEEP_STORAGE"]["valueFrom"]["secretKeyRef"]
    assert storage == {"name": "regsweep-db", "key": "storage"}
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["resources"]["requests"] == {"cpu": "4", "memory": "8Gi"}
    assert "--pack" in worker["command"]
    # The sweep file sets train.threads: 1, which wins over --cpus-per-worker, as for pools.
    assert "train.threads=1" in worker["command"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers=0", "--image=x"], "error: --workers: 0 is not allowed"),
        (["--image=x", "--mem=lots"], "error: --mem: 'lots' is not a Kubernetes quantity"),
        (["--image=x", "--cpus-per-worker=0"], "error: --cpus-per-worker: 0"),
        (["--workers=2"], "Missing option '--image'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sweep: Path, args: list[str], message: str) -> None:
    result = run_cli_here("kubernetes", sweep, *args)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""


def test_output_file(sweep: Path, tmp_path: Path) -> None:
    target = tmp_path / "sweep.k8s.yaml"
    result = run_cli_here("kubernetes", sweep, "--workers=2", "--image=x", "-o", target)
    assert result.code == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(target.read_text()) if d]
    assert {d["kind"] for d in docs} >= {"Job", "ConfigMap"}
    assert f"kubectl apply -f {target}" in result.stderr


def test_a_password_in_the_sweep_file_stays_out_of_the_config_map(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    raw = idx_sweep(tiny_idx, tmp_path)
    raw["study"]["storage"] = f"postgresql+psycopg://u:{SECRET_PASSWORD}@db:5432/x"
    path = tmp_path / "sweep.yaml"
    path.write_text("# the team's sweep\n" + yaml.safe_dump(raw, sort_keys=False))
    text, docs = generate(path)
    assert SECRET_PASSWORD not in text
    (config_map,) = by_kind(docs)["ConfigMap"]
    held = config_map["data"]["sweep.yaml"]
    assert held.startswith("# the team's sweep\n")  # the file as written, comments kept
    assert yaml.safe_load(held)["study"]["storage"] == "postgresql+psycopg://u:***@db:5432/x"
