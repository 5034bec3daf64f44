"""``python -m regsweep`` is the ``regsweep`` command."""

import sys

from regsweep.cli import main

sys.exit(main())
