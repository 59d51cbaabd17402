"""The dependency rule holds: import-linter's layers contract in .importlinter (apps > export >
train > serving | batch > core : backends : kernels > common) is kept, so `make test` fails on an
import that goes up a layer, and says which one."""

from __future__ import annotations

import re
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


def test_every_path_architecture_md_names_exists():
    """ARCHITECTURE.md is the newcomer's map: a file it names that was moved or renamed makes it
    wrong, so every `path/with/a/slash` it quotes must exist under the repository (or under
    engine/, where the text is inside it) and every bare `module.py` somewhere in the source."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    quoted = set(re.findall(r"`([\w./<>-]+\.(?:py|md)|[\w.<>-]+/[\w./<>-]*)`", text))
    named = [q for q in quoted if "<" not in q and not q.startswith("../")]
    sources = {
        p.name for d in ("common", "engine", "export", "train") for p in (REPO / d).rglob("*")
    }
    missing = [
        q
        for q in named
        if not (
            (REPO / q).exists() or (REPO / "engine" / q).exists() or (REPO / "train" / q).exists()
        )
        and not ("/" not in q and q in sources)
    ]
    assert len(named) > 10, f"found only {named}: the pattern no longer matches the document"
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
