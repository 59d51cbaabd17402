"""The dependency rule holds: import-linter's layers contract in .importlinter (apps > export >
train > serving | batch > core : backends : kernels > common) is kept, so `make test` fails on an
import that goes up a layer, and says which one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_layers_contract_is_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")  # the dev extra's CLI
    out = subprocess.run(
        [str(lint_imports), "--no-cache"],  # reads .importlinter in the repository root
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    broken = out.stdout.partition("Broken contracts")[2].strip("-\n ") or out.stdout + out.stderr
    assert out.returncode == 0, f"imports that break the dependency rule:\n{broken}"
