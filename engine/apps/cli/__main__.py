"""`python -m p2phd.engine.apps.cli` runs the `p2phd` command."""

import sys

from p2phd.engine.apps.cli import main

sys.exit(main())
