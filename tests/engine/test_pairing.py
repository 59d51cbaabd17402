"""Pairing label, instance and photo files by key in the Cityscapes and flat layouts."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.common.errors import InputError
from p2phd.common.pairing import find_pairs, pair_key


def png(path: Path, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (4, 6, 3) if mode == "RGB" else (4, 6)
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return path


def cityscapes(root: Path, keys: list[str], split: str = "val") -> None:
    for key in keys:
        city = key.split("_")[0]
        png(root / "gtFine" / split / city / f"{key}_gtFine_labelIds.png")
        png(root / "gtFine" / split / city / f"{key}_gtFine_instanceIds.png")
        png(root / "gtFine" / split / city / f"{key}_gtFine_color.png", "RGB")  # ignored
        png(root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png", "RGB")


def test_key_strips_the_cityscapes_suffixes():
    assert pair_key("a/aachen_000000_000019_gtFine_labelIds.png") == "aachen_000000_000019"
    assert pair_key("aachen_000000_000019_leftImg8bit.png") == "aachen_000000_000019"
    assert pair_key("x_instanceIds.png") == "x"
    assert pair_key("scene_0001.png") == "scene_0001"


def test_cityscapes_layout_pairs_across_cities(tmp_path):
    keys = ["aachen_000000_000019", "bremen_000001_000002", "aachen_000003_000004"]
    cityscapes(tmp_path, keys)
    pairs = find_pairs(tmp_path, "val")
    assert [p.key for p in pairs] == sorted(keys)
    for p in pairs:
        assert p.label.name == f"{p.key}_gtFine_labelIds.png"
        assert p.instance.name == f"{p.key}_gtFine_instanceIds.png"
        assert p.image.name == f"{p.key}_leftImg8bit.png"


def test_flat_layout_pairs_cityscapes_named_and_plain_files(tmp_path):
    png(tmp_path / "train_label" / "f_000001_gtFine_labelIds.png")
    png(tmp_path / "train_inst" / "f_000001_gtFine_instanceIds.png")
    png(tmp_path / "train_img" / "f_000001_leftImg8bit.png", "RGB")
    for d in ("label", "inst", "img"):
        png(tmp_path / f"train_{d}" / "s_2.png")
    pairs = find_pairs(tmp_path, "train")
    assert [(p.key, p.instance.parent.name, p.image.parent.name) for p in pairs] == [
        ("f_000001", "train_inst", "train_img"),
        ("s_2", "train_inst", "train_img"),
    ]


def test_photos_are_optional_when_not_needed(tmp_path):
    png(tmp_path / "test_label" / "a.png")
    png(tmp_path / "test_inst" / "a.png")
    (pair,) = find_pairs(tmp_path, "test", image=False)
    assert pair.image is None and pair.instance.name == "a.png"
    with pytest.raises(InputError, match="test_img"):
        find_pairs(tmp_path, "test")


@pytest.mark.parametrize("orphan_dir", ["train_label", "train_inst", "train_img"])
def test_a_missing_partner_is_an_error_naming_the_file(tmp_path, orphan_dir):
    for d in ("label", "inst", "img"):
        png(tmp_path / f"train_{d}" / "both.png")
    orphan = png(tmp_path / orphan_dir / "lonely_gtFine_labelIds.png")
    with pytest.raises(InputError, match=str(orphan)):
        find_pairs(tmp_path, "train")


def test_cityscapes_photo_without_labels_names_the_photo(tmp_path):
    cityscapes(tmp_path, ["aachen_000000_000019"])
    photo = png(tmp_path / "leftImg8bit" / "val" / "aachen" / "aachen_9_9_leftImg8bit.png", "RGB")
    with pytest.raises(InputError, match=str(photo)):
        find_pairs(tmp_path, "val")


def test_unknown_layout_says_what_was_expected(tmp_path):
    with pytest.raises(InputError, match="train_label"):
        find_pairs(tmp_path, "train")


def test_real_cityscapes_sample_pairs(cityscapes_sample):
    pairs = find_pairs(cityscapes_sample, "train")
    assert pairs and all(p.instance and p.image for p in pairs)
    assert all(p.label.name.startswith(p.key) for p in pairs)


def test_each_role_takes_its_files_from_one_cityscapes_folder(tmp_path):
    from p2phd.common.pairing import select_role

    keys = ["aachen_000000_000019", "bremen_000001_000002"]
    cityscapes(tmp_path, keys)
    files = sorted((tmp_path / "gtFine" / "val").rglob("*.png"))
    assert [p.name for p in select_role(files, "label")] == [
        f"{k}_gtFine_labelIds.png" for k in keys
    ]
    assert [p.name for p in select_role(files, "instance")] == [
        f"{k}_gtFine_instanceIds.png" for k in keys
    ]
    plain = [tmp_path / "scene_1.png"]  # the flat layout: the folder says the role
    assert select_role(plain, "label") == select_role(plain, "instance") == plain


def test_maps_chosen_together_are_told_apart_by_name():
    from p2phd.common.pairing import choose_maps

    frame = ["k_gtFine_color.png", "k_gtFine_polygons.json", "k_gtFine_instanceIds.png",
             "k_gtFine_labelIds.png"]  # fmt: skip
    assert choose_maps(frame) == ("k_gtFine_labelIds.png", "k_gtFine_instanceIds.png")
    assert choose_maps(["street.png"]) == ("street.png", None)
    with pytest.raises(InputError, match="j_instanceIds.png: no label map with key 'j'"):
        choose_maps(["k_labelIds.png", "j_instanceIds.png"])
    with pytest.raises(InputError, match="0 label maps among k_gtFine_color.png"):
        choose_maps(["k_gtFine_color.png"])
