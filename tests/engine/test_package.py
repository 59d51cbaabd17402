"""The model package's manifest: round trip, integrity, clear errors."""

import json

import numpy as np
import pytest

from p2phd.common.errors import PackageError
from p2phd.engine.core.package import FEATURES, GENERATOR, Manifest, ModelPackage, write_manifest


def make_package(tmp_path, features=False):
    (tmp_path / GENERATOR).write_bytes(b"onnx bytes stand-in")
    if features:
        np.savez(tmp_path / FEATURES, class_26=np.ones((10, 3), np.float32))
    m = Manifest(
        architecture={"family": "pix2pixhd", "netG": "global"},
        label_nc=35,
        instance=True,
        feat_num=3,
        size_multiple=16,
    )
    write_manifest(tmp_path, m)
    return tmp_path


def test_round_trip_and_defaults(tmp_path):
    pkg = ModelPackage(make_package(tmp_path, features=True))
    m = pkg.manifest
    assert m.input_channels == 39
    assert m.input_order == ["onehot:35", "edges:1", "features:3"]
    assert m.features and not m.encoder
    assert m.semantic_classes()[26].name == "car"
    assert pkg.feature_clusters()[26].shape == (10, 3)


def test_changed_file_refuses_to_load(tmp_path):
    make_package(tmp_path)
    (tmp_path / GENERATOR).write_bytes(b"tampered")
    with pytest.raises(PackageError, match="sha256"):
        ModelPackage(tmp_path)


def test_missing_manifest_and_bad_version(tmp_path):
    with pytest.raises(PackageError, match="not a model package"):
        ModelPackage(tmp_path)
    make_package(tmp_path)
    d = json.loads((tmp_path / "manifest.json").read_text())
    d["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(PackageError, match="format_version 99"):
        ModelPackage(tmp_path)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    from p2phd.common.atomic import atomic_write_bytes

    atomic_write_bytes(tmp_path / "f.bin", b"x")
    (tmp_path / "plain.bin").write_bytes(b"x")
    mode = (tmp_path / "f.bin").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.bin").stat().st_mode & 0o777
    assert mode != 0o600 or _umask_is_private()


def _umask_is_private() -> bool:
    """True when this process's umask itself hides files from group and others."""
    import os

    mask = os.umask(0o077)
    os.umask(mask)
    return mask & 0o044 == 0o044
