"""The ``regsweep`` command: parse, call the library, print. Nothing else lives here.

regsweep launch sweeps/digits.yaml

Each command group is a module that registers its commands on :data:`app.app`; none
imports another.
"""

from __future__ import annotations

from regsweep.cli import cluster, insight, study, sweep  # noqa: F401  (registers the commands)
from regsweep.cli.app import app, main, run

__all__ = ["app", "main", "run"]
