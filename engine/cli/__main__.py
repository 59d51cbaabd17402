"""`python -m p2phd.engine.cli` runs the `p2phd` command."""

import sys

from p2phd.engine.cli import main

sys.exit(main())
