"""``python -m regsweep`` is the ``regsweep`` command."""

from regsweep.cli import run

run()
