"""The README's commands, as written: every `p2phd` line of its sh blocks parses against the real
CLI (a renamed subcommand or flag fails here), every `make` target it names exists, and the
"Using it" quick start runs end to end in a fresh directory at small sizes (a tiny model, 32x64
scenes, free ports); only commands that need a GPU are skipped, with the reason.

Sizes are the only thing changed: each command runs with the README's flags, with the values of
the size flags below made small, and `--set` overrides appended to `train` for a tiny model.
"""

from __future__ import annotations

import contextlib
import queue
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.engine.apps.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Lines of the README's sh blocks that are neither `p2phd` nor `make`: tools of their own.
OTHER_TOOLS = (".venv/bin/pip ", ".venv/bin/pytest ")
# The quick start at small sizes: (subcommand, flag) -> value, and arguments appended.
SMALL_VALUES = {
    ("synth", "-n"): "2",
    ("synth", "--size"): "32x64",
    ("cluster", "-k"): "2",
    ("build", "--size"): "32x64",
    ("bench", "--size"): "32x64",
    ("bench", "--batch"): "1",
}
APPENDED = {
    "train": [
        f"--set={kv}"
        for kv in (
            "size=[32,64]",
            "niter=1",
            "niter_decay=0",
            "precision=fp32",
            "model.ngf=4",
            "model.nef=4",
            "model.n_blocks_global=1",
            "ndf=8",
            "num_D=1",
        )
    ],  # fmt: skip
    "bench": ["--iters", "2", "--warmup", "1"],
}
README_PORTS = ("50051", "9090")  # the serve/client/metrics ports the README names


def sh_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(the heading above, the logical lines) of each ```sh block; `\\` continuations joined."""
    blocks, heading, lines, inside = [], "", [], False
    for raw in text.splitlines():
        if raw.startswith("#") and not inside:
            heading = raw.lstrip("#").strip()
        elif raw.strip() == "```sh":
            inside, lines = True, []
        elif raw.strip() == "```" and inside:
            inside = False
            joined = "\n".join(lines).replace("\\\n", " ")
            logical = [ln.strip() for ln in joined.splitlines()]
            blocks.append((heading, [ln for ln in logical if ln and not ln.startswith("#")]))
        elif inside:
            lines.append(raw)
    return blocks


def commands(tool: str) -> list[list[str]]:
    """Every `tool` command line of the README's sh blocks, as argv (comments removed)."""
    return [
        shlex.split(line, comments=True)
        for _, lines in sh_blocks(README.read_text())
        for line in lines
        if line.startswith(tool + " ")
    ]


def test_every_line_of_the_readme_sh_blocks_is_checked_here():
    for _, lines in sh_blocks(README.read_text()):
        for line in lines:
            assert line.startswith(("p2phd ", "make ", *OTHER_TOOLS)), (
                f"README line not covered by tests/test_readme.py: {line}"
            )
    assert len(commands("p2phd")) >= 10


@pytest.mark.parametrize("argv", commands("p2phd"), ids=lambda a: " ".join(a[1:4]))
def test_readme_p2phd_command_parses(argv, capsys):
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"README command does not parse: {shlex.join(argv)}\n{capsys.readouterr().err}")
    assert args.command == argv[1]


@pytest.mark.parametrize("argv", commands("make"), ids=lambda a: " ".join(a[1:]))
def test_readme_make_target_exists(argv):
    done = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- the quick start, end to end ----------------------------------------------------------------


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def small(argv: list[str], ports: dict[str, str]) -> list[str]:
    """`argv` with the size flags' values made small and the README's ports replaced."""
    out = list(argv)
    for i in range(2, len(out)):
        if (out[1], out[i - 1]) in SMALL_VALUES:
            out[i] = SMALL_VALUES[(out[1], out[i - 1])]
        for port, free in ports.items():
            out[i] = re.sub(rf"\b{port}\b", free, out[i])
    return out + APPENDED.get(out[1], [])


def gpu_only(argv: list[str]) -> str | None:
    if "tensorrt" in argv:
        return "TensorRT needs an NVIDIA GPU (tests/engine/test_tensorrt_backend.py runs it there)"
    return None


def user_inputs(root: Path) -> None:
    """What the quick start presumes a user has: a Cityscapes gtFine/val tree (with the colour
    pictures and polygons beside the ids) and one label.png / inst.png pair."""
    from p2phd.train.synth import render_scene

    city = root / "gtFine" / "val" / "aachen"
    city.mkdir(parents=True)
    for i in range(2):
        s = render_scene(np.random.default_rng([9, i]), 32, 64)
        key = f"aachen_{i:06d}_000019_gtFine"
        Image.fromarray(s.label).save(city / f"{key}_labelIds.png")
        Image.fromarray(s.instance.astype(np.uint16)).save(city / f"{key}_instanceIds.png")
        Image.fromarray(s.photo).save(city / f"{key}_color.png")
        (city / f"{key}_polygons.json").write_text("{}")
    shutil.copy(city / "aachen_000000_000019_gtFine_labelIds.png", root / "label.png")
    shutil.copy(city / "aachen_000000_000019_gtFine_instanceIds.png", root / "inst.png")


class Served:
    """A `p2phd serve` process, ready once it logs that it is serving."""

    def __init__(self, argv: list[str], cwd: Path):
        cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", *argv[1:]]
        self.proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        log = []
        while True:
            line = self.lines.get(timeout=120)
            log.append(line)
            assert line, f"serve exited: {''.join(log)}"
            if "serving" in line:
                return

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put("")

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)
        self.proc.kill()


def run_block(lines: list[str], cwd: Path) -> list[str]:
    """Run a README block's p2phd commands in order at small sizes; returns what was skipped."""
    ports = {p: free_port() for p in README_PORTS}
    skipped, servers = [], []
    try:
        for line in lines:
            argv = small(shlex.split(line, comments=True), ports)
            reason = gpu_only(argv)
            if reason:
                skipped.append(f"{line}: {reason}")
                continue
            if argv[1] == "serve":
                servers.append(Served(argv, cwd))
                continue
            cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", *argv[1:]]
            done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}\n{done.stderr}"
    finally:
        for server in servers:
            server.stop()
    return skipped


@pytest.mark.slow
def test_the_quick_start_runs_as_written(tmp_path, monkeypatch):
    """README "Using it": synth, train, cluster, export, info, build, render, serve + client,
    bench, in that order, in a fresh directory; then its "From Python" snippet."""
    text = README.read_text()
    heading, lines = next(b for b in sh_blocks(text) if b[0] == "Using it")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    user_inputs(tmp_path)
    skipped = run_block(lines, tmp_path)
    assert all("TensorRT" in s for s in skipped), skipped
    assert (tmp_path / "my-model" / "manifest.json").is_file()
    rendered = sorted(p.name for p in (tmp_path / "out").iterdir())
    keys = [f"aachen_{i:06d}_000019" for i in range(2)]
    assert rendered == [f"{k}_s{s}.png" for k in keys for s in range(3)]  # --styles 3
    assert Image.open(tmp_path / "out.png").size == (64, 32)  # the client's image

    snippet = re.search(r"From Python:\s*```python\n(.*?)```", text, re.S)
    assert snippet, "the README's 'From Python' block"
    monkeypatch.chdir(tmp_path)
    label = np.asarray(Image.open("label.png"))
    instance = np.asarray(Image.open("inst.png")).astype(np.int32)
    names = {"labels": np.stack([label] * 2), "instances": np.stack([instance] * 2)}
    exec(snippet.group(1), names)  # noqa: S102 (the README's own code)
    assert names["image"].shape == (32, 64, 3) and names["images"].shape == (2, 32, 64, 3)
