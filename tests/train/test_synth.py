"""p2phd synth: deterministic street scenes with Cityscapes ids and touching same-class things."""

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.common.classes import CITYSCAPES_BY_NAME
from p2phd.train.synth import THING_CLASSES, render_scene, write_dataset

REQUIRED = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "person", "car")
P2PHD = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "p2phd"


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_same_seed_same_bytes_other_seed_other_scenes(tmp_path):
    write_dataset(tmp_path / "a", 3, (32, 64), seed=5)
    write_dataset(tmp_path / "b", 3, (32, 64), seed=5)
    write_dataset(tmp_path / "c", 3, (32, 64), seed=6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert len(digest(tmp_path / "a")) == 9
    assert set(digest(tmp_path / "a").values()).isdisjoint(digest(tmp_path / "c").values())


def test_scenes_hold_the_required_classes():
    seen = set()
    for i in range(4):
        seen |= set(np.unique(render_scene(np.random.default_rng([0, i]), 64, 128).label).tolist())
    for name in REQUIRED:
        assert CITYSCAPES_BY_NAME[name].id in seen, name


@pytest.mark.parametrize("seed", range(4))
def test_instance_ids_follow_cityscapes_and_same_class_things_touch(seed):
    scene = render_scene(np.random.default_rng([seed, 0]), 64, 128)
    inst, label = scene.instance.astype(np.int64), scene.label.astype(np.int64)
    things = inst >= 1000
    # things hold class*1000+k with the class of their label; stuff holds the class id itself
    assert np.array_equal(inst[things] // 1000, label[things])
    assert np.isin(label[things], THING_CLASSES).all()
    assert np.array_equal(inst[~things], label[~things])
    # two different cars side by side: only the instance map separates them
    left, right = inst[:, :-1], inst[:, 1:]
    touching = (left != right) & (left // 1000 == 26) & (right // 1000 == 26)
    assert touching.any()


def test_each_instance_has_its_own_colour():
    scene = render_scene(np.random.default_rng([1, 0]), 128, 256)
    cars = [i for i in np.unique(scene.instance) if i // 1000 == 26]
    assert len(cars) >= 2
    means = [scene.photo[scene.instance == i].mean(0) for i in cars]
    gaps = [np.abs(a - b).max() for k, a in enumerate(means) for b in means[k + 1 :]]
    assert min(gaps) > 3  # mean colours differ by more than a few grey levels


def test_cli_writes_the_flat_layout_with_pngs_of_the_right_types(tmp_path):
    out = subprocess.run(
        [str(P2PHD), "synth", "-o", str(tmp_path), "-n", "2", "--size", "32x64", "--seed", "3"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    label = Image.open(next((tmp_path / "train_label").glob("*.png")))
    inst = Image.open(next((tmp_path / "train_inst").glob("*.png")))
    photo = Image.open(next((tmp_path / "train_img").glob("*.png")))
    assert label.mode == "L" and label.size == (64, 32)
    assert inst.mode.startswith("I;16") and np.asarray(inst).max() >= 24000
    assert photo.mode == "RGB" and photo.size == (64, 32)


def test_cli_rejects_a_malformed_size_without_traceback(tmp_path):
    out = subprocess.run(
        [str(P2PHD), "synth", "-o", str(tmp_path), "--size", "64"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "HxW" in out.stderr and "Traceback" not in out.stderr
    huge = [str(P2PHD), "synth", "-o", str(tmp_path), "--size", "100000x100000"]
    out = subprocess.run(huge, capture_output=True, text=True)
    assert out.returncode == 2 and "past the largest input" in out.stderr
