"""Hostile model packages (issue 17, finding 14 and 'Also'): manifest values that pass a type
check but break consumers, manifests nested to exhaust the parser, and symlinks out of the
package. Each is a one-line PackageError at load, never a traceback or a later INTERNAL."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import grpc
import pytest

from p2phd.common.errors import PackageError
from p2phd.engine.apps.cli import main
from p2phd.engine.core.package import GENERATOR, MANIFEST, ModelPackage
from p2phd.engine.serving.server import ServerConfig
from p2phd.engine.serving.wire import renderer_pb2, renderer_pb2_grpc
from tests.server.conftest import ThreadedServer


@pytest.fixture
def package_copy(server_package, tmp_path) -> Path:
    return Path(shutil.copytree(server_package, tmp_path / "pkg"))


def edit_manifest(package: Path, edit) -> None:
    path = package / MANIFEST
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


HOSTILE_CLASSES = {
    "id 2^40": {"id": 2**40},
    "negative id": {"id": -1},
    "id beyond label_nc": {"id": 12},
    "string colours": {"color": ["red", "green", "blue"]},
    "colour out of range": {"color": [0, 300, 0]},
    "is_thing not a bool": {"is_thing": "yes"},
}


@pytest.mark.parametrize("change", HOSTILE_CLASSES.values(), ids=HOSTILE_CLASSES)
def test_class_values_every_consumer_cannot_take_are_refused_at_load(package_copy, change):
    edit_manifest(package_copy, lambda d: d["classes"][1].update(change))
    with pytest.raises(PackageError, match=r"manifest.json: classes entry .* expected unique"):
        ModelPackage(package_copy)


def test_duplicate_class_ids_are_refused(package_copy):
    edit_manifest(package_copy, lambda d: d["classes"][2].update(id=1))
    with pytest.raises(PackageError, match="classes entry"):
        ModelPackage(package_copy)


def test_class_values_at_their_limits_load_and_get_model_info_sends_them(package_copy):
    """What the manifest check lets through, GetModelInfo can send (an id of 2^40 once loaded and
    then made every GetModelInfo fail with INTERNAL)."""
    last = {"id": 11, "name": "ünïcode", "color": [255, 0, 255], "is_thing": True}
    edit_manifest(package_copy, lambda d: d["classes"][11].update(last))
    s = ThreadedServer(ServerConfig(model_dir=package_copy, port=0, metrics_port=0))
    try:
        stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
        info = stub.GetModelInfo(renderer_pb2.GetModelInfoRequest(), timeout=30)
    finally:
        s.stop()
    sent = info.classes[11]
    assert (sent.id, sent.name, list(sent.color), sent.is_thing) == tuple(last.values())


def test_a_deeply_nested_manifest_is_a_one_line_error(package_copy, capsys):
    (package_copy / MANIFEST).write_text("[" * 50_000 + "]" * 50_000)
    assert main(["serve", str(package_copy), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: nested deeper than 32 levels" in err and "Traceback" not in err
    (package_copy / MANIFEST).write_text('{"a":' * 40 + "1" + "}" * 40)  # parses, still too deep
    with pytest.raises(PackageError, match="nested deeper than 32 levels"):
        ModelPackage(package_copy)


def test_an_oversized_manifest_is_refused_before_parsing(package_copy):
    (package_copy / MANIFEST).write_bytes(b" " * (5 << 20) + b"{}")
    with pytest.raises(PackageError, match="larger than 4 MiB"):
        ModelPackage(package_copy)


def test_a_listed_file_linking_outside_the_package_is_refused(package_copy, tmp_path):
    """The generator replaced by a symlink to an identical file elsewhere: hashes match, but the
    package no longer holds what it serves."""
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(package_copy / GENERATOR, outside)
    (package_copy / GENERATOR).unlink()
    os.symlink(outside, package_copy / GENERATOR)
    with pytest.raises(PackageError, match="outside the package"):
        ModelPackage(package_copy)


def test_a_manifest_linking_outside_the_package_is_refused(package_copy, tmp_path):
    outside = tmp_path / "manifest-elsewhere.json"
    shutil.move(package_copy / MANIFEST, outside)
    os.symlink(outside, package_copy / MANIFEST)
    with pytest.raises(PackageError, match="outside the package"):
        ModelPackage(package_copy)


def test_a_listed_file_linking_to_a_device_is_refused_without_reading_it(package_copy):
    (package_copy / GENERATOR).unlink()
    os.symlink("/dev/zero", package_copy / GENERATOR)
    with pytest.raises(PackageError, match="not a regular file"):
        ModelPackage(package_copy)


def test_links_within_the_package_still_load(package_copy):
    """A package may link its own files (e.g. a variant deduplicated by a store)."""
    (package_copy / "store").mkdir()
    shutil.move(package_copy / GENERATOR, package_copy / "store" / GENERATOR)
    os.symlink(Path("store") / GENERATOR, package_copy / GENERATOR)
    assert ModelPackage(package_copy).generator_path.is_file()
