"""`p2phd demo`: real images from the package's examples, each shown side by side with its label
colours and ground truth where known, and a measured table per backend."""

import subprocess
import sys

import numpy as np
from PIL import Image

from p2phd.engine.apps.demo import CAPTION_PX, GAP_PX
from p2phd.engine.core.quality import synthetic_maps, write_entry
from p2phd.train.synth import render_scene


def test_demo_renders_examples_side_by_side_and_times_backends(tiny_package, tmp_path):
    labels, instances = synthetic_maps(2, 32, 64, 35, seed=11)
    examples = tiny_package / "examples"
    examples.mkdir()
    for i in range(2):
        Image.fromarray(labels[i]).save(examples / f"ex{i}_labelIds.png")
        Image.fromarray(instances[i].astype(np.uint16)).save(examples / f"ex{i}_instanceIds.png")
    photo = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)
    Image.fromarray(photo).save(examples / "ex1_leftImg8bit.png")  # a Cityscapes ground truth
    scene = render_scene(np.random.default_rng([7, 0]), 32, 64)  # what `p2phd synth` names so
    Image.fromarray(scene.label).save(examples / "synth_7_00000_labelIds.png")
    Image.fromarray(scene.instance).save(examples / "synth_7_00000_instanceIds.png")

    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "demo", "--model", str(tiny_package)]
    proc = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    images = sorted((out / "images").iterdir())
    assert [p.name for p in images] == ["ex0.png", "ex1.png", "synth_7_00000.png"]
    assert all(Image.open(p).size == (64, 32) for p in images)

    sheets = {p.stem: np.asarray(Image.open(p)) for p in (out / "side_by_side").iterdir()}
    assert sorted(sheets) == ["ex0", "ex1", "synth_7_00000"]
    panel = lambda sheet, i: sheet[CAPTION_PX:, i * (64 + GAP_PX) : i * (64 + GAP_PX) + 64]  # noqa: E731
    for key, truth in (("ex0", None), ("ex1", photo), ("synth_7_00000", scene.photo)):
        sheet = sheets[key]
        n = 3 if truth is not None else 2
        assert sheet.shape == (32 + CAPTION_PX, n * (64 + GAP_PX) - GAP_PX, 3)
        np.testing.assert_array_equal(
            panel(sheet, 1), np.asarray(Image.open(out / "images" / f"{key}.png"))
        )
        if truth is not None:
            np.testing.assert_array_equal(panel(sheet, 2), truth)
        assert str(out / "side_by_side" / f"{key}.png") in proc.stdout
    # Label colours: one colour per class, so equal ids show equal colours.
    colours = panel(sheets["ex0"], 0).reshape(-1, 3)
    ids = labels[0].reshape(-1)
    for cls in np.unique(ids):
        assert len(np.unique(colours[ids == cls], axis=0)) == 1

    table = (out / "latency.md").read_text()
    for backend in ("openvino", "onnxruntime", "torch"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {backend} | fp32"))
        assert float(row.split("|")[3]) > 0  # a measured latency, not a placeholder
    assert str(out / "images") in proc.stdout and str(out / "latency.md") in proc.stdout


def test_demo_measures_again_after_a_re_export(tiny_package, monkeypatch):
    """A quality entry left in engines/ by an earlier export does not stop the demo measuring
    this one (precision=auto would ignore the stale entry and the demo would run fp32)."""
    from p2phd.engine.apps import demo
    from p2phd.engine.core import build
    from p2phd.engine.core.package import ModelPackage

    monkeypatch.setattr(demo, "backend_class", lambda name: type("B", (), {
        "reduced": "bf16",
        "reduced_unsupported": staticmethod(lambda precision: None)}))  # fmt: skip
    built = []
    monkeypatch.setattr(build, "build_engine", lambda *args: built.append(args))
    engines = ModelPackage(tiny_package).engines_dir
    key = ModelPackage(tiny_package).content_key
    for package, expected in (("an-earlier-export", 1), (key, 1)):
        write_entry(engines, "openvino:bf16", {"psnr_db": 50.0, "package": package})
        demo.ensure_quality_report(tiny_package, "openvino")
        assert len(built) == expected
