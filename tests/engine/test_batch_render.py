"""`p2phd render`: pairing by key, per-file failures, resume after SIGKILL, identical pixels."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.engine.batch.render import BatchRenderer, is_complete_png, list_images, plan_jobs
from p2phd.engine.core.quality import synthetic_maps
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style


def write_maps(root: Path, n: int, h: int, w: int, cityscapes: bool, seed: int = 3) -> list[str]:
    """Label/instance PNG pairs under root/labels and root/instances; returns their keys."""
    labels, instances = synthetic_maps(n, h, w, 35, seed=seed)
    # Two touching cars: instances of a clustered class, so seeds change their style.
    labels[:, h // 4 : h // 2, : w // 2] = 26
    instances[:, h // 4 : h // 2, : w // 4] = 26001
    instances[:, h // 4 : h // 2, w // 4 : w // 2] = 26002
    keys = []
    for i in range(n):
        key = f"city{i % 2}_{i:06d}_000019" if cityscapes else f"scene_{i:03d}"
        sub = f"city{i % 2}/" if cityscapes else ""
        lab_name = f"{key}_gtFine_labelIds.png" if cityscapes else f"{key}.png"
        inst_name = f"{key}_gtFine_instanceIds.png" if cityscapes else f"{key}.png"
        (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
        (root / "instances" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels[i]).save(root / "labels" / sub / lab_name)
        Image.fromarray(instances[i].astype(np.uint16)).save(root / "instances" / sub / inst_name)
        keys.append(key)
    return keys


def p2phd_render(model: Path, root: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "render", str(model)]
    cmd += ["--labels", str(root / "labels"), "--instances", str(root / "instances")]
    cmd += ["-o", str(out), "--backend", "onnxruntime", "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("cityscapes", [True, False], ids=["cityscapes", "flat"])
def test_inputs_pair_by_key_and_match_direct_rendering(tiny_package, tmp_path, cityscapes):
    keys = write_maps(tmp_path, 5, 32, 64, cityscapes)
    out = tmp_path / "out"
    proc = p2phd_render(tiny_package, tmp_path, out, "--batch", "2", "--seed", "4")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "rendered 5" in stdout
    assert sorted(p.stem for p in out.iterdir()) == sorted(keys)

    # The pipeline changes no pixel: each file equals a direct Renderer call with the same seed.
    labels = sorted(list_images(tmp_path / "labels"))
    insts = sorted(list_images(tmp_path / "instances"))
    with Renderer(tiny_package, backend="onnxruntime") as r:
        for lab, inst in zip(labels, insts, strict=True):
            expected = r.render_files(lab, inst, Style(seed=4))
            key = next(k for k in keys if lab.name.startswith(k))
            got = np.asarray(Image.open(out / f"{key}.png"))
            np.testing.assert_array_equal(got, expected)


def test_corrupt_and_unpaired_inputs_are_reported_and_skipped(tiny_package, tmp_path):
    keys = write_maps(tmp_path, 4, 32, 64, cityscapes=False)
    corrupt = tmp_path / "labels" / f"{keys[1]}.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    (tmp_path / "instances" / f"{keys[2]}.png").unlink()  # no partner
    out = tmp_path / "out"
    proc = p2phd_render(tiny_package, tmp_path, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"{keys[1]}.png" in stderr and "truncated" in stderr
    assert f"{keys[2]}.png" in stderr and "no instance map" in stderr
    assert sorted(p.stem for p in out.iterdir()) == [keys[0], keys[3]]
    assert "rendered 2" in stdout and "failed 2" in stdout


def test_sigkill_then_rerun_leaves_one_valid_image_per_input(tiny_package, tmp_path):
    keys = write_maps(tmp_path, 24, 128, 256, cityscapes=False)
    out = tmp_path / "out"
    proc = p2phd_render(tiny_package, tmp_path, out, "--batch", "2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(out.glob("*.png")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the first run finished before it could be killed"
    assert len(list(out.glob("*.png"))) < len(keys)

    rerun = p2phd_render(tiny_package, tmp_path, out, "--batch", "2")
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    files = sorted(out.iterdir())
    assert [p.name for p in files] == sorted(f"{k}.png" for k in keys)  # no temporaries left
    for p in files:
        assert is_complete_png(p)
        assert Image.open(p).size == (256, 128)


def test_styles_give_one_distinct_image_per_seed(tiny_package, tmp_path):
    write_maps(tmp_path, 1, 32, 64, cityscapes=False)
    labels = list_images(tmp_path / "labels")
    insts = list_images(tmp_path / "instances")
    out = tmp_path / "out"
    jobs, failures = plan_jobs(labels, out, instances=insts, seeds=range(10, 13), seed_suffix=True)
    assert not failures
    with Renderer(tiny_package, backend="onnxruntime") as r:
        summary = BatchRenderer(r.render, 35, batch=3).run(jobs)
    assert summary.rendered == 3 and not summary.failed
    images = [np.asarray(Image.open(out / f"scene_000_s{s}.png")) for s in (10, 11, 12)]
    assert any(not np.array_equal(images[0], im) for im in images[1:])
    # A second run finds every output complete and renders nothing.
    with Renderer(tiny_package, backend="onnxruntime") as r:
        again = BatchRenderer(r.render, 35, batch=3).run(jobs)
    assert again.skipped == 3 and again.rendered == 0


def cityscapes_val(root: Path, n: int) -> list[str]:
    """A gtFine/val tree as Cityscapes ships it: per frame labelIds, instanceIds, color and
    polygons.json side by side in <city>/ folders."""
    labels, instances = synthetic_maps(n, 32, 64, 35, seed=5)
    keys = []
    for i in range(n):
        city = ("aachen", "bremen")[i % 2]
        key = f"{city}_{i:06d}_000019"
        d = root / "gtFine" / "val" / city
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels[i]).save(d / f"{key}_gtFine_labelIds.png")
        Image.fromarray(instances[i].astype(np.uint16)).save(d / f"{key}_gtFine_instanceIds.png")
        Image.fromarray(np.stack([labels[i]] * 3, -1)).save(d / f"{key}_gtFine_color.png")
        (d / f"{key}_gtFine_polygons.json").write_text('{"objects": []}')
        keys.append(key)
    return keys


def render_cli(
    model: Path, labels: Path, instances: Path, out: Path
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "p2phd.engine.apps.cli",
        "render",
        str(model),
        "--labels",
        str(labels),
    ]
    cmd += ["--instances", str(instances), "-o", str(out), "--backend", "onnxruntime", "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_one_cityscapes_folder_serves_as_labels_and_instances(tiny_package, tmp_path):
    keys = cityscapes_val(tmp_path, 4)
    val = tmp_path / "gtFine" / "val"
    done = render_cli(tiny_package, val, val, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "rendered 4" in done.stdout
    assert sorted(p.stem for p in (tmp_path / "out").iterdir()) == sorted(keys)
    # Each output is its labelIds + instanceIds pair, not the colour picture.
    with Renderer(tiny_package, backend="onnxruntime") as r:
        for key in keys:
            d = val / key.split("_")[0]
            expected = r.render_files(
                d / f"{key}_gtFine_labelIds.png", d / f"{key}_gtFine_instanceIds.png", Style()
            )
            np.testing.assert_array_equal(
                np.asarray(Image.open(tmp_path / "out" / f"{key}.png")), expected
            )


def test_the_default_models_examples_folder_renders_as_it_is(tiny_package, tmp_path):
    examples = Path(__file__).resolve().parents[2] / "models" / "default" / "examples"
    done = render_cli(tiny_package, examples, examples, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    n = len(list(examples.glob("*_labelIds.png")))
    assert n and f"rendered {n}," in done.stdout


def test_a_file_without_its_partner_is_named(tiny_package, tmp_path):
    keys = cityscapes_val(tmp_path, 3)
    val = tmp_path / "gtFine" / "val"
    (val / "aachen" / f"{keys[0]}_gtFine_instanceIds.png").unlink()
    (val / "bremen" / f"{keys[1]}_gtFine_labelIds.png").unlink()
    done = render_cli(tiny_package, val, val, tmp_path / "out")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert any(f"{keys[0]}_gtFine_labelIds.png" in ln and "no instance map" in ln for ln in lines)
    assert any(f"{keys[1]}_gtFine_instanceIds.png" in ln and "no label map" in ln for ln in lines)
    assert [p.stem for p in (tmp_path / "out").iterdir()] == [keys[2]]


def test_a_flat_folder_named_as_both_sources_is_refused(tiny_package, tmp_path):
    write_maps(tmp_path, 2, 32, 64, cityscapes=False)
    labels = tmp_path / "labels"
    done = render_cli(tiny_package, labels, labels, tmp_path / "out")
    assert done.returncode == 2
    assert "picked as both label map and instance map" in done.stderr
