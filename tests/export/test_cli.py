"""`p2phd export` and `p2phd info` as a user runs them: the real CLI, in a subprocess where the
process boundary matters and in-process (`main(argv)`, same code path) where it does not."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from p2phd.engine.apps.cli import main
from p2phd.engine.core.package import ModelPackage
from p2phd.export.package_writer import export_package
from p2phd.train.checkpoint import Checkpoint, save_checkpoint
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator

ARCH = ["--ngf", "4", "--n-downsample-global", "2", "--n-blocks-global", "1", "--label-nc", "6"]


def p2phd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2phd.engine.apps.cli", *args], capture_output=True, text=True
    )


def test_export_original_files_then_info_shows_the_package(tmp_path):
    cfg = ModelConfig(label_nc=6, feat_num=3, ngf=4, n_downsample_global=2, n_blocks_global=1)
    torch.save(build_generator(cfg).state_dict(), tmp_path / "latest_net_G.pth")
    torch.save(build_encoder(cfg).state_dict(), tmp_path / "latest_net_E.pth")
    np.save(tmp_path / "features_clustered_010.npy", {4: np.zeros((3, 3)), 2: np.ones((1, 3))})
    out = tmp_path / "model"
    r = p2phd(
        "export",
        "--pix2pixhd-g", str(tmp_path / "latest_net_G.pth"),
        "--pix2pixhd-e", str(tmp_path / "latest_net_E.pth"),
        "--features", str(tmp_path / "features_clustered_010.npy"),
        *ARCH, "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = ModelPackage(out).manifest
    assert m.feat_num == 3 and m.encoder and m.features  # feat_num came from the encoder file

    engines = out / "engines"
    engines.mkdir()
    quality = {
        "openvino:bf16": {"psnr_db": 47.2, "max_abs_err": 0.01},
        "tensorrt:fp16": {"psnr_db": 31.5, "max_abs_err": 0.2},
    }
    (engines / "quality.json").write_text(json.dumps(quality))
    r = p2phd("info", str(out))
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "pix2pixHD global generator: ngf 4" in text
    assert "10 channels = onehot:6 + edges:1 + features:3" in text
    assert "centres for 2 classes" in text and "encoder.onnx" in text
    for name, digest in m.files.items():
        assert name in text and digest[:12] in text
    bf16 = next(line for line in text.splitlines() if "openvino:bf16" in line)
    fp16 = next(line for line in text.splitlines() if "tensorrt:fp16" in line)
    assert "47.2" in bf16 and "yes" in bf16
    assert "31.5" in fp16 and "no:" in fp16 and "40 dB" in fp16


def test_export_our_checkpoint(tmp_path, capsys):
    cfg = ModelConfig(label_nc=6, ngf=4, n_downsample_global=2, n_blocks_global=1)
    g = build_generator(cfg)
    save_checkpoint(tmp_path / "ckpt.pt", Checkpoint(cfg, g.state_dict()))
    assert (
        main(["export", "--checkpoint", str(tmp_path / "ckpt.pt"), "-o", str(tmp_path / "m")]) == 0
    )
    assert "relative error vs PyTorch" in capsys.readouterr().out
    assert ModelConfig.from_json(ModelPackage(tmp_path / "m").manifest.architecture) == cfg


def test_channel_mismatch_is_a_clean_error(tmp_path, capsys):
    cfg = ModelConfig(label_nc=6, feat_num=3, ngf=4, n_downsample_global=2, n_blocks_global=1)
    torch.save(build_generator(cfg).state_dict(), tmp_path / "g.pth")
    argv = ["export", "--pix2pixhd-g", str(tmp_path / "g.pth"), *ARCH, "-o", str(tmp_path / "m")]
    assert main(argv) == 2
    assert "did you forget --feat-num 3?" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_info_on_a_tampered_package_says_so(tmp_path):
    cfg = ModelConfig(label_nc=3, ngf=2, n_downsample_global=1, n_blocks_global=0)
    out = export_package(tmp_path / "m", build_generator(cfg), cfg, fp16=False)
    with open(out / "generator.onnx", "ab") as f:
        f.write(b"\0")
    r = p2phd("info", str(out))
    assert r.returncode == 2 and "does not match the manifest" in r.stderr


def test_thing_classes_mark_exactly_those_classes_as_instances(tmp_path, capsys):
    cfg = ModelConfig(label_nc=6, ngf=4, n_downsample_global=2, n_blocks_global=1)
    save_checkpoint(tmp_path / "ckpt.pt", Checkpoint(cfg, build_generator(cfg).state_dict()))
    argv = ["export", "--checkpoint", str(tmp_path / "ckpt.pt"), "-o", str(tmp_path / "m")]
    assert main([*argv, "--thing-classes", "1,4"]) == 0
    classes = ModelPackage(tmp_path / "m").manifest.semantic_classes()
    assert [c.id for c in classes if c.is_thing] == [1, 4]

    for bad in ("6", "car", "-1"):
        assert main([*argv, "--thing-classes", f"1,{bad}"]) == 2
        err = capsys.readouterr().err
        assert repr(bad) in err and "0..5" in err
