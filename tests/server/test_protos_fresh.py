"""The committed gRPC stubs in engine/serving/wire are what `make protos` generates now."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WIRE = REPO / "engine" / "serving" / "wire"


def test_committed_stubs_match_the_protos(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the stubs")
    out = tmp_path / "wire"
    out.mkdir()
    subprocess.run(
        ["make", "-s", "-C", str(REPO), "protos", f"WIRE={out}"],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_bytes() for p in out.glob("*_pb2*")}
    committed = {p.name: p.read_bytes() for p in WIRE.glob("*_pb2*")}
    assert fresh, "make protos generated nothing"
    assert sorted(committed) == sorted(fresh), "stub files differ: run `make protos`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make protos` and commit engine/serving/wire"
