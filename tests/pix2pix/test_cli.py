"""The pix2pix user's path through the real CLI: bring `latest_net_G.pth`, `p2phd export`,
`p2phd render --images` (outputs OUT/<stem>.png; resume and error handling of the shared
pipeline); user mistakes are one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from p2phd.engine.apps.cli import main
from p2phd.engine.batch.render import is_complete_png
from p2phd.engine.core.renderer import Renderer
from p2phd.train.pix2pix.config import Pix2PixConfig

from .conftest import original_generator, random_images, save_original


def p2phd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2phd.engine.apps.cli", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def cyclegan(tmp_path_factory):
    """A CycleGAN-style package exported by the CLI from a latest_net_G_A.pth."""
    tmp = tmp_path_factory.mktemp("cyclegan")
    cfg = Pix2PixConfig(netG="resnet_6blocks", norm="instance", ngf=4)
    path = save_original(original_generator(cfg), tmp / "latest_net_G_A.pth")
    out = tmp / "model"
    r = p2phd(
        "export", "--pix2pix-g", str(path), "--netG", "resnet_6blocks", "--norm", "instance",
        "--ngf", "4", "--no-fp16", "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    return out


def test_render_images_writes_one_png_per_stem_and_resumes(cyclegan, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    images = random_images(3, 36, 44, seed=7)
    Image.fromarray(images[0]).save(src / "a_leftImg8bit.png")
    Image.fromarray(images[1]).save(src / "sub" / "b.jpg", quality=95)
    Image.fromarray(images[2][..., 0]).save(src / "grey.png")  # converted to RGB
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    argv = ["render", str(cyclegan), "--images", str(src), "-o", str(out), "--quiet"]
    argv += ["--backend", "onnxruntime", "--precision", "fp32"]
    assert main(argv) == 1  # one input failed, the others rendered
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "rendered 3" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a_leftImg8bit.png", "b.png", "grey.png"]
    with Renderer(cyclegan, backend="onnxruntime", precision="fp32") as renderer:
        direct = renderer.render_image_file(src / "a_leftImg8bit.png")
    assert np.array_equal(np.asarray(Image.open(out / "a_leftImg8bit.png")), direct)
    # A rerun skips complete outputs and replaces a truncated one.
    (out / "b.png").write_bytes((out / "b.png").read_bytes()[:50])
    (src / "broken.png").unlink()
    assert main(argv) == 0
    assert "rendered 1, skipped 2" in capsys.readouterr().out
    assert is_complete_png(out / "b.png")


def test_mistakes_are_one_line_errors(cyclegan, tmp_path):
    r = p2phd("render", str(cyclegan), "--labels", str(tmp_path), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "use --images" in r.stderr and "Traceback" not in r.stderr
    path = tmp_path / "latest_net_G.pth"
    save_original(original_generator(Pix2PixConfig(netG="unet_128", ngf=4)), path)
    r = p2phd("export", "--pix2pix-g", str(path), "--netG", "unet_128", "-o", str(tmp_path / "m"))
    assert r.returncode == 2 and "--norm" in r.stderr
    r = p2phd(
        "export", "--pix2pix-g", str(path), "--netG", "unet_256", "--norm", "batch",
        "--ngf", "4", "-o", str(tmp_path / "m"),
    )  # fmt: skip
    assert r.returncode == 2 and "unet_128" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()
