"""Original-layout checkpoints export to image-input packages that render what the original code
computes: U-Net and ResNet generators, both norms, both BatchNorm modes, at batch 2 with
differing images (per-image statistics must stay per image inside a batch)."""

from __future__ import annotations

import numpy as np
import pytest

from p2phd.common.errors import InputError
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.export.checkpoint_export import export_checkpoint
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.original_checkpoint import load_pix2pix
from tests.doubles.fixtures import GPU_OR_DOUBLE, trt_double_fixture  # noqa: F401  (the fixture)

from .conftest import (
    original_generator,
    original_output,
    random_images,
    save_original,
    to_input,
    to_uint8,
)

CASES = [
    # netG, norm, bn_mode, trained with dropout, (H, W)
    ("unet_128", "batch", "image-stats", True, (128, 256)),
    ("unet_128", "batch", "eval", True, (128, 128)),
    ("unet_256", "batch", "image-stats", False, (256, 256)),
    ("unet_128", "instance", "image-stats", False, (128, 128)),
    ("resnet_6blocks", "batch", "image-stats", True, (40, 48)),
    ("resnet_6blocks", "batch", "eval", False, (40, 48)),
    ("resnet_9blocks", "instance", "eval", False, (40, 48)),
]


def export(tmp_path, net_g, norm, bn_mode, dropout, fp16=False):
    trained = Pix2PixConfig(netG=net_g, norm=norm, ngf=4, use_dropout=dropout)
    net = original_generator(trained, seed=len(net_g))
    path = save_original(net, tmp_path / "latest_net_G.pth", prefix="module.")
    cfg = Pix2PixConfig(netG=net_g, norm=norm, ngf=4, bn_mode=bn_mode)
    package = export_checkpoint(load_pix2pix(cfg, path), tmp_path / "model", fp16=fp16)
    return net, package


@pytest.mark.parametrize(("net_g", "norm", "bn_mode", "dropout", "size"), CASES)
def test_renders_what_the_original_computes(tmp_path, net_g, norm, bn_mode, dropout, size):
    net, package = export(tmp_path, net_g, norm, bn_mode, dropout)
    images = random_images(2, *size, seed=3)
    expected = to_uint8(original_output(net, to_input(images), bn_mode))
    with Renderer(package, backend="onnxruntime", precision="fp32") as renderer:
        got = renderer.render_images(images)
        alone = renderer.render_images(images[1])
    assert got.shape == (2, *size, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert np.abs(alone.astype(int) - got[1]).max() <= 1  # a batch changes nothing
    if norm == "batch":  # the other BatchNorm mode computes something else
        other = "eval" if bn_mode == "image-stats" else "image-stats"
        wrong = to_uint8(original_output(net, to_input(images), other))
        assert np.abs(got.astype(int) - wrong).max() > 10


def test_manifest_says_image_input(tmp_path):
    _, package = export(tmp_path, "unet_256", "batch", "eval", False)
    m = ModelPackage(package).manifest
    assert m.input_kind == "image" and m.input_nc == 3 and m.input_order == ["image:3"]
    assert m.size_multiple == 256 and m.label_nc == 0 and not m.classes
    assert m.architecture["family"] == "pix2pix" and m.architecture["bn_mode"] == "eval"
    assert m.parity["generator"] < 1e-4


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_other_backends_agree(tmp_path, backend):
    net, package = export(tmp_path, "unet_128", "batch", "image-stats", True)
    images = random_images(2, 128, 128, seed=5)
    expected = to_uint8(original_output(net, to_input(images), "image-stats"))
    with Renderer(package, backend=backend, precision="fp32") as renderer:
        got = renderer.render_images(images)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_size_policy_applies(tmp_path):
    _, package = export(tmp_path, "unet_128", "instance", "image-stats", False)
    odd = random_images(1, 100, 150)[0]
    with Renderer(package, backend="onnxruntime", precision="fp32") as padded:
        assert padded.render_images([odd, odd[:64]])[0].shape == (100, 150, 3)
        with pytest.raises(InputError, match="takes input images"):
            padded.render(np.zeros((128, 128), np.uint8))
        with pytest.raises(InputError, match="1 channels; this model takes 3"):
            padded.render_images(odd[..., :1])
    strict = Renderer(package, "onnxruntime", "fp32", size_policy="reject")
    with strict, pytest.raises(InputError, match="not a multiple of 128"):
        strict.render_images(odd)


def test_reduced_precision_goes_through_the_quality_report(tmp_path):
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.build import build_engine
    from p2phd.export.package_info import describe_package

    _, package = export(tmp_path, "unet_128", "batch", "image-stats", False)
    result = build_engine(package, "openvino", "bf16", EngineOptions(sizes=[(128, 256)]))
    assert result.quality["reference"] == "torch:fp32"
    assert result.quality["inputs"].startswith("synthetic_images")
    assert result.quality["psnr_db"] is None or result.quality["psnr_db"] > 30
    info = describe_package(package)
    assert "pix2pix unet_128 generator" in info and "openvino:bf16" in info
    assert "3-channel input images" in info


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("device", GPU_OR_DOUBLE)
def test_tensorrt_renders_what_the_original_computes(tmp_path, request, device, precision):
    """On the GPU, or on the TensorRT/CUDA test doubles (the same ONNX on ONNX Runtime: the
    package's fp16 variant and the default profile, which follows unet_256's multiple of 256)."""
    from p2phd.engine.core.quality import psnr_db

    if device == "double":
        request.getfixturevalue("trt_double")
    net, package = export(tmp_path, "unet_256", "batch", "image-stats", True, fp16=True)
    images = random_images(2, 256, 512, seed=11)
    expected = to_uint8(original_output(net, to_input(images), "image-stats"))
    with Renderer(package, backend="tensorrt", precision=precision) as renderer:
        got = renderer.render_images(images)
    assert got.shape == expected.shape
    assert psnr_db(expected, got) > (45 if precision == "fp32" else 35)


def test_equal_valued_parameters_keep_their_names(tmp_path):
    """Fresh BatchNorm layers all hold ones and zeros: each keeps its own ONNX initializer, so the
    torch reference backend (which reads weights by name) opens the package."""
    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pix.networks import build_generator

    cfg = Pix2PixConfig(netG="unet_128", norm="batch", ngf=4, bn_mode="eval")
    package = export_package(tmp_path / "m", build_generator(cfg), cfg, fp16=False)
    images = random_images(1, 128, 128)
    with Renderer(package, "torch", "fp32") as ref, Renderer(package, "onnxruntime") as ort:
        assert np.abs(ref.render_images(images).astype(int) - ort.render_images(images)).max() <= 1
