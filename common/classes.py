"""Semantic classes: the Cityscapes label table (pix2pixHD's label_nc 35) and palettes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from p2phd.common.errors import ConfigError


@dataclass(frozen=True)
class SemanticClass:
    id: int
    name: str
    color: tuple[int, int, int]
    is_thing: bool = False

    def to_json(self) -> dict:
        return asdict(self)


# Cityscapes labelIds (cityscapesScripts' labels.py): id, name, colour, has instances.
CITYSCAPES: tuple[SemanticClass, ...] = tuple(
    SemanticClass(i, n, c, t)
    for i, n, c, t in [
        (0, "unlabeled", (0, 0, 0), False),
        (1, "ego vehicle", (0, 0, 0), False),
        (2, "rectification border", (0, 0, 0), False),
        (3, "out of roi", (0, 0, 0), False),
        (4, "static", (0, 0, 0), False),
        (5, "dynamic", (111, 74, 0), False),
        (6, "ground", (81, 0, 81), False),
        (7, "road", (128, 64, 128), False),
        (8, "sidewalk", (244, 35, 232), False),
        (9, "parking", (250, 170, 160), False),
        (10, "rail track", (230, 150, 140), False),
        (11, "building", (70, 70, 70), False),
        (12, "wall", (102, 102, 156), False),
        (13, "fence", (190, 153, 153), False),
        (14, "guard rail", (180, 165, 180), False),
        (15, "bridge", (150, 100, 100), False),
        (16, "tunnel", (150, 120, 90), False),
        (17, "pole", (153, 153, 153), False),
        (18, "polegroup", (153, 153, 153), False),
        (19, "traffic light", (250, 170, 30), False),
        (20, "traffic sign", (220, 220, 0), False),
        (21, "vegetation", (107, 142, 35), False),
        (22, "terrain", (152, 251, 152), False),
        (23, "sky", (70, 130, 180), False),
        (24, "person", (220, 20, 60), True),
        (25, "rider", (255, 0, 0), True),
        (26, "car", (0, 0, 142), True),
        (27, "truck", (0, 0, 70), True),
        (28, "bus", (0, 60, 100), True),
        (29, "caravan", (0, 0, 90), True),
        (30, "trailer", (0, 0, 110), True),
        (31, "train", (0, 80, 100), True),
        (32, "motorcycle", (0, 0, 230), True),
        (33, "bicycle", (119, 11, 32), True),
        (34, "license plate", (0, 0, 142), False),
    ]
)

CITYSCAPES_BY_NAME = {c.name: c for c in CITYSCAPES}


def default_classes(label_nc: int) -> tuple[SemanticClass, ...]:
    """Cityscapes for label_nc 35; otherwise generic names with a deterministic palette."""
    if label_nc == len(CITYSCAPES):
        return CITYSCAPES
    return tuple(SemanticClass(i, f"class {i}", _palette_color(i)) for i in range(label_nc))


def parse_class_ids(spec: str, label_nc: int) -> frozenset[int]:
    """Class ids written "11,24,26" (empty: none), each checked to be below `label_nc`."""
    ids = set()
    for item in spec.split(",") if spec.strip() else ():
        if not item.strip().isdigit() or int(item) >= label_nc:
            raise ConfigError(
                f"class id {item.strip()!r}: expected an integer 0..{label_nc - 1} "
                '(comma-separated, e.g. "11,24,26")'
            )
        ids.add(int(item))
    return frozenset(ids)


def with_things(classes, thing_ids) -> tuple[SemanticClass, ...]:
    """`classes` with exactly `thing_ids` marked as things (classes whose regions are instances,
    each with its own instance id), as the model was trained."""
    return tuple(replace(c, is_thing=c.id in thing_ids) for c in classes)


def _palette_color(i: int) -> tuple[int, int, int]:
    """The PASCAL VOC bit-interleaved palette: distinct colours for small ids."""
    r = g = b = 0
    for shift in range(8):
        r |= ((i >> 0) & 1) << (7 - shift)
        g |= ((i >> 1) & 1) << (7 - shift)
        b |= ((i >> 2) & 1) << (7 - shift)
        i >>= 3
    return (r, g, b)
