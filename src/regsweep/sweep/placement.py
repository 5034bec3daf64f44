"""Which scheduler job runs this worker, recorded on each of its trials beside ``worker``.

A Slurm job array's task is known by its array job and task id (``1234_5``: what
``squeue`` shows and ``scancel`` takes), its own job id (``sacct``'s JobIDRaw) and how
often Slurm requeued it; they come from the variables Slurm sets in every task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# The trial user attributes; only trials run under Slurm have them.
SLURM_JOB_ATTR = "slurm_job"
SLURM_JOB_ID_ATTR = "slurm_job_id"
SLURM_RESTARTS_ATTR = "slurm_restarts"


def scheduler_attrs(env: Mapping[str, str] | None = None) -> dict[str, str | int]:
    """The Slurm job of this process as trial attributes; empty outside Slurm."""
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return {}
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    restarts = env.get("SLURM_RESTART_COUNT", "0")
    return {
        SLURM_JOB_ATTR: f"{array}_{task}" if array and task else job_id,
        SLURM_JOB_ID_ATTR: job_id,
        SLURM_RESTARTS_ATTR: int(restarts) if restarts.isdigit() else 0,
    }


def slurm_text(attrs: Mapping[str, object]) -> str:
    """``slurm 1234_5`` (with ``, restart 2`` once requeued), or "" for a trial run elsewhere."""
    job = attrs.get(SLURM_JOB_ATTR)
    if job is None:
        return ""
    restarts = attrs.get(SLURM_RESTARTS_ATTR) or 0
    return f"slurm {job}" + (f", restart {restarts}" if restarts else "")
