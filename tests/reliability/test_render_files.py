"""`p2phd render` against hostile file trees: special files named *.png (a FIFO, a symlink to
/dev/zero) and an output directory inside or equal to the inputs (issue 17, findings 7 and 13).

Each run is a subprocess with a timeout and an address-space limit, so the code before the fix
(which blocked forever on the FIFO and read /dev/zero until memory ran out) fails the test
instead of hanging it or exhausting the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.reliability.corpus import png
from tests.server.conftest import make_maps

ADDRESS_SPACE = 4 << 30  # far above a tiny render, far below what reading /dev/zero takes


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def render(package: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "render", str(package), *args]
    cmd += ["--backend", "onnxruntime", "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, preexec_fn=_limit_memory)


def write_pairs(labels: Path, instances: Path, n: int, cityscapes: bool) -> list[str]:
    keys = []
    for i in range(n):
        key = f"city_{i:06d}_000019" if cityscapes else f"frame{i}"
        label, instance = make_maps(seed=i)
        lab = f"{key}_gtFine_labelIds.png" if cityscapes else f"{key}.png"
        inst = f"{key}_gtFine_instanceIds.png" if cityscapes else f"{key}.png"
        for directory, name, array in ((labels, lab, label), (instances, inst, instance)):
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(
                png(array.astype("uint16") if array is instance else array)
            )
        keys.append(key)
    return keys


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_and_a_device_named_png_are_refused_not_read(server_package, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(2):
        (labels / f"good-{i}.png").write_bytes(png(make_maps(seed=i)[0]))
    os.mkfifo(labels / "fifo.png")  # opening it for reading blocks until a writer comes
    (labels / "zero.png").symlink_to("/dev/zero")  # endless bytes
    out = tmp_path / "out"
    done = render(server_package, "--labels", str(labels), "--no-instance", "-o", str(out))
    assert done.returncode == 1, done.stderr
    for name in ("fifo.png", "zero.png"):
        said = [line for line in done.stderr.splitlines() if name in line]
        assert said and "not a regular file" in said[0], (name, done.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["good-0.png", "good-1.png"]


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(server_package, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "good.png").write_bytes(png(make_maps()[0]))
    big = labels / "big.png"
    with open(big, "wb") as f:  # sparse: costs no disk, but 8 GiB if read
        f.truncate(8 << 30)
    out = tmp_path / "out"
    done = render(server_package, "--labels", str(labels), "--no-instance", "-o", str(out))
    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if "big.png" in line]
    assert said and "exceeds the file limit" in said[0], done.stderr
    assert [p.name for p in out.iterdir()] == ["good.png"]


def test_output_directory_equal_to_the_labels_is_refused(server_package, tmp_path):
    labels = tmp_path / "labels"
    write_pairs(labels, tmp_path / "instances", 3, cityscapes=False)
    before = {p: p.read_bytes() for p in labels.iterdir()}
    args = ("--labels", str(labels), "--instances", str(tmp_path / "instances"))
    done = render(server_package, *args, "-o", str(labels))
    assert done.returncode == 2, (done.stdout, done.stderr)  # not "rendered 0, skipped 3"
    assert "output directory" in done.stderr and "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in labels.iterdir()} == before  # inputs untouched


@pytest.mark.parametrize("cityscapes", [True, False], ids=["cityscapes", "flat"])
def test_output_inside_the_inputs_resumes_across_reruns(server_package, tmp_path, cityscapes):
    """`-o LABELS/out`: the second and third runs skip what is done instead of reading the
    first run's outputs as label maps ("input key ... also used by")."""
    labels, instances = tmp_path / "labels", tmp_path / "instances"
    keys = write_pairs(labels, instances, 3, cityscapes)
    out = labels / "out"
    args = ("--labels", str(labels), "--instances", str(instances), "-o", str(out))
    first = render(server_package, *args)
    assert first.returncode == 0, first.stderr
    assert "rendered 3" in first.stdout
    (out / f"{keys[0]}.png").unlink()  # as if the first run had been killed before it
    for _ in range(2):
        again = render(server_package, *args)
        assert again.returncode == 0, again.stderr
        assert "skipped" in again.stdout and "failed 0" in again.stdout
    assert "rendered 0, skipped 3" in again.stdout
    assert sorted(p.stem for p in out.iterdir()) == sorted(keys)
    for p in out.iterdir():
        assert Image.open(p).size == (64, 32)
