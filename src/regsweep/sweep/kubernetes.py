"""``regsweep kubernetes``: the manifests of a sweep on Kubernetes, one YAML stream.

regsweep kubernetes sweeps/mnist.yaml --workers 8 --image registry.example/regsweep:1 \\
    -o sweep.k8s.yaml
kubectl create secret generic regsweep-db --from-literal=password="$(openssl rand -hex 24)"
kubectl apply -f sweep.k8s.yaml

- PostgreSQL: a StatefulSet with a persistent volume and its Service (or, with
  ``--external-database``, none: a managed server's URL in the Secret);
- the sweep file as a ConfigMap, mounted where the workers read it;
- the workers: an Indexed Job of N pods (``parallelism`` = ``completions`` = N) that each
  run ``regsweep worker``; ``restartPolicy: OnFailure`` restarts a crashed worker in place,
  and ``terminationGracePeriodSeconds`` leaves time for SIGTERM's clean-up (the trial it
  holds is failed and queued again) before Kubernetes kills it;
- optuna-dashboard: a Deployment and a ClusterIP Service, reached with
  ``kubectl port-forward``, never exposed.

The database password lives in a Secret the user creates (``kubectl create secret``); it is
never written into these manifests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from regsweep.config.schema import SweepConfig
from regsweep.errors import ConfigError
from regsweep.storage.rdb import MAX_CONNECTIONS_PER_WORKER
from regsweep.storage.urls import redact
from regsweep.sweep.pool import worker_args

SECRET = "regsweep-db"
DB_SERVICE = "regsweep-postgres"
DB_USER = DB_NAME = "regsweep"
DB_IMAGE = "postgres:16"
SWEEP_DIR = "/etc/regsweep"  # where the ConfigMap's sweep.yaml is mounted
DATA_DIR = "/app/data"  # the image's data cache (WORKDIR /app, data.root: data)
DASHBOARD_PORT = 8080
# The image's user (Dockerfile: useradd --uid 1000 regsweep): a numeric uid lets the
# kubelet check runAsNonRoot.
IMAGE_UID = 1000
# SIGTERM's clean-up takes a second or two; a slow database gets the rest.
GRACE_S = 120
PASSWORD_ENV = "REGSWEEP_DB_PASSWORD"

_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$")


@dataclass(frozen=True)
class KubernetesOptions:
    workers: int
    image: str
    cpus_per_worker: int = 1
    mem: str = "2Gi"
    gpus_per_worker: int = 0
    external_database: bool = False
    db_storage: str = "10Gi"


def dns_label(text: str, limit: int = 40) -> str:
    """``text`` as a Kubernetes name part: lowercase letters, digits and dashes."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return label or "sweep"


def max_connections(workers: int) -> int:
    """The in-cluster server's max_connections: every worker at its most, the dashboard
    and psql besides, never below PostgreSQL's default of 100."""
    return max(100, MAX_CONNECTIONS_PER_WORKER * workers + 20)


def check(options: KubernetesOptions) -> None:
    """Raises ConfigError (one line naming the option) for what Kubernetes would refuse."""
    if options.workers < 1:
        raise ConfigError(f"--workers: {options.workers} is not allowed; give 1 or more")
    if options.cpus_per_worker < 1:
        raise ConfigError(f"--cpus-per-worker: {options.cpus_per_worker}; give 1 or more")
    if options.gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker: {options.gpus_per_worker}; give 0 or more")
    if not options.image.strip() or any(c.isspace() for c in options.image):
        raise ConfigError(f"--image: {options.image!r} is not an image reference")
    for flag, value in (("--mem", options.mem), ("--db-storage", options.db_storage)):
        if not _QUANTITY.match(value):
            raise ConfigError(
                f"{flag}: {value!r} is not a Kubernetes quantity (allowed: a number with an "
                "optional unit Ki, Mi, Gi, Ti, K, M, G or T, e.g. 4Gi)"
            )


def _labels(component: str, study: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "regsweep", "app.kubernetes.io/component": component}
    if study is not None:
        labels["regsweep/study"] = study
    return labels


def _storage_env(options: KubernetesOptions) -> list[dict[str, Any]]:
    """REGSWEEP_STORAGE from the Secret: the whole URL of an external database, or the
    in-cluster URL around the password (Kubernetes expands $(VAR) of an earlier variable)."""
    if options.external_database:
        return [
            {
                "name": "REGSWEEP_STORAGE",
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "storage"}},
            }
        ]
    return [
        {
            "name": PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}},
        },
        {
            "name": "REGSWEEP_STORAGE",
            "value": f"postgresql+psycopg://{DB_USER}:$({PASSWORD_ENV})@{DB_SERVICE}:5432/{DB_NAME}",
        },
    ]


def _security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _postgres(options: KubernetesOptions, workers: int) -> list[dict[str, Any]]:
    labels = _labels("database")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": DB_SERVICE, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}],
        },
    }
    container = {
        "name": "postgres",
        "image": DB_IMAGE,
        "args": ["-c", f"max_connections={max_connections(workers)}"],
        "env": [
            {"name": "POSTGRES_USER", "value": DB_USER},
            {"name": "POSTGRES_DB", "value": DB_NAME},
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}},
            },
            # A subfolder: a fresh volume's root may hold lost+found, which initdb refuses.
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME]},
            "periodSeconds": 5,
        },
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": DB_SERVICE, "labels": labels},
        "spec": {
            "serviceName": DB_SERVICE,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 60, "containers": [container]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": options.db_storage}},
                    },
                }
            ],
        },
    }
    return [service, statefulset]


def worker_container(
    config: SweepConfig, options: KubernetesOptions, sets: Sequence[str], debug: bool
) -> dict[str, Any]:
    """The container every pod of the Job runs (the Docker test runs exactly this)."""
    threads = config.train.threads if config.train.threads is not None else options.cpus_per_worker
    resources: dict[str, Any] = {
        "requests": {"cpu": str(options.cpus_per_worker), "memory": options.mem},
        "limits": {"memory": options.mem},
    }
    if options.gpus_per_worker:
        resources["limits"]["nvidia.com/gpu"] = str(options.gpus_per_worker)
    return {
        "name": "worker",
        "image": options.image,
        "command": [
            "regsweep",
            "worker",
            f"{SWEEP_DIR}/sweep.yaml",
            *worker_args(config, sets, threads, debug),
        ],
        "env": [
            *_storage_env(options),
            {"name": "OMP_NUM_THREADS", "value": str(threads)},
        ],
        "resources": resources,
        "securityContext": _security(),
        "volumeMounts": [
            {"name": "sweep", "mountPath": SWEEP_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    }


def without_password(sweep_text: str) -> str:
    """The sweep file as the ConfigMap holds it: as written, but a password in its
    ``study.storage`` replaced by ``***`` (the workers take their URL from the Secret, so
    the file's is never used in the cluster, and a ConfigMap is no place for a secret)."""
    raw = yaml.safe_load(sweep_text)
    study = raw.get("study") if isinstance(raw, dict) else None
    if not isinstance(study, dict):
        return sweep_text
    url = study.get("storage")
    if not isinstance(url, str) or redact(url) == url:
        return sweep_text
    # In place, to keep the user's comments and layout; rewritten whole where the URL is
    # not written verbatim (quoted with escapes, say).
    replaced = sweep_text.replace(url, redact(url))
    if url not in replaced and yaml.safe_load(replaced)["study"]["storage"] == redact(url):
        return replaced
    return yaml.safe_dump({**raw, "study": {**study, "storage": redact(url)}}, sort_keys=False)


def manifests(
    config: SweepConfig,
    sweep_text: str,
    options: KubernetesOptions,
    *,
    sets: Sequence[str] = (),
    debug: bool = False,
) -> list[dict[str, Any]]:
    """Every object of the sweep, in the order ``kubectl apply`` should create them."""
    check(options)
    study = dns_label(config.study_name)
    name = f"regsweep-{study}"
    objects: list[dict[str, Any]] = []
    if not options.external_database:
        objects += _postgres(options, options.workers)
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-sweep", "labels": _labels("sweep", study)},
            "data": {"sweep.yaml": without_password(sweep_text)},
        }
    )
    labels = _labels("worker", study)
    objects.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "completionMode": "Indexed",
                "completions": options.workers,
                "parallelism": options.workers,
                # Crashes restart in place (OnFailure); a pod that keeps failing (bad
                # input exits 2 at once) ends the Job after this many restarts in all.
                "backoffLimit": 3 * options.workers,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "terminationGracePeriodSeconds": GRACE_S,
                        "securityContext": {"fsGroup": IMAGE_UID},
                        "containers": [worker_container(config, options, sets, debug)],
                        "volumes": [
                            {"name": "sweep", "configMap": {"name": f"{name}-sweep"}},
                            {"name": "data", "emptyDir": {}},
                        ],
                    },
                },
            },
        }
    )
    dash = _labels("dashboard")
    objects += [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "regsweep-dashboard", "labels": dash},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dash},
                "template": {
                    "metadata": {"labels": dash},
                    "spec": {
                        "containers": [
                            {
                                "name": "dashboard",
                                "image": options.image,
                                "command": [
                                    "regsweep",
                                    "dashboard",
                                    "--host",
                                    "0.0.0.0",
                                    "--port",
                                    str(DASHBOARD_PORT),
                                ],
                                "env": [
                                    *_storage_env(options),
                                    # Where users reach it: through port-forward alone.
                                    {
                                        "name": "REGSWEEP_DASHBOARD_PUBLISHED",
                                        "value": f"127.0.0.1:{DASHBOARD_PORT}",
                                    },
                                ],
                                "ports": [{"name": "http", "containerPort": DASHBOARD_PORT}],
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "512Mi"},
                                    "limits": {"memory": "1Gi"},
                                },
                                "securityContext": _security(),
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "regsweep-dashboard", "labels": dash},
            # ClusterIP: inside the cluster only (optuna-dashboard has no login and can
            # delete studies); kubectl port-forward brings it to the user's machine.
            "spec": {
                "type": "ClusterIP",
                "selector": dash,
                "ports": [{"name": "http", "port": DASHBOARD_PORT, "targetPort": "http"}],
            },
        },
    ]
    return objects


class _Plain(yaml.SafeDumper):
    """Repeats a shared value (the label sets) instead of YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(objects: list[dict[str, Any]], config: SweepConfig, options: KubernetesOptions) -> str:
    """One YAML stream, opened by the commands that use it."""
    name = f"regsweep-{dns_label(config.study_name)}"
    secret = (
        f"kubectl create secret generic {SECRET} --from-literal=storage="
        "'postgresql+psycopg://USER:PASSWORD@HOST:5432/DB'"
        if options.external_database
        else f'kubectl create secret generic {SECRET} --from-literal=password="$(openssl rand '
        '-hex 24)"'
    )
    header = [
        f"# {options.workers} regsweep workers of study {config.study_name!r} on Kubernetes, "
        "written by `regsweep kubernetes`.",
        f"#   1. the database password, once (never in this file): {secret}",
        "#   2. kubectl apply -f THIS_FILE",
        f"#   follow: kubectl get job {name}; kubectl logs -f -l regsweep/study="
        f"{dns_label(config.study_name)} --max-log-requests {max(5, options.workers)}",
        f"#   dashboard: kubectl port-forward service/regsweep-dashboard {DASHBOARD_PORT}, then "
        f"http://127.0.0.1:{DASHBOARD_PORT}",
        f"#   stop: kubectl delete job {name} (each worker fails and queues again its trial)",
    ]
    body = yaml.dump_all(objects, Dumper=_Plain, sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n---\n" + body
