"""Procedural street scenes (label map, instance map, photo) in the flat pix2pixHD layout.

Tests, the demo and the default model train on these instead of real data. Every instance gets
its own colour and a dark outline in the photo, and cars park bumper to bumper, so a generator
measurably needs the instance edges and features. Each building block is an instance of its own
(its facade colour is its own), so every outline the photo draws is in the instance map and the
instance features can carry each facade's colour. Deterministic per seed; numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from p2phd.common.atomic import atomic_path
from p2phd.common.errors import ConfigError

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 7, 8, 11, 17, 21, 23, 24, 26
THING_CLASSES = (BUILDING, PERSON, CAR)
MIN_SIDE = 8  # the smallest scene side the layout draws
MAX_LABEL = max(ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR)  # Cityscapes ids

# Base photo colour per class (RGB, 0..1), varied per scene and per instance.
_BASE = {
    ROAD: (0.33, 0.32, 0.34),
    SIDEWALK: (0.62, 0.58, 0.55),
    BUILDING: (0.55, 0.45, 0.40),
    POLE: (0.30, 0.30, 0.32),
    VEGETATION: (0.20, 0.42, 0.15),
    SKY: (0.45, 0.65, 0.92),
}


@dataclass
class Scene:
    """One synthetic sample: uint8 labels, uint16 Cityscapes-style instance ids, uint8 RGB photo."""

    label: np.ndarray
    instance: np.ndarray
    photo: np.ndarray


class _Canvas:
    """Label, instance and float photo layers painted back to front."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = h, w, rng
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.instance = np.zeros((h, w), np.uint16)
        self.photo = np.zeros((h, w, 3), np.float32)
        self.next_k = {c: 0 for c in THING_CLASSES}

    def paint(self, mask: np.ndarray, cls: int, colour: np.ndarray, instance: int) -> None:
        self.label[mask] = cls
        self.instance[mask] = instance
        self.photo[mask] = colour[mask] if colour.ndim == 3 else colour

    def new_instance(self, cls: int) -> int:
        k = self.next_k[cls]
        self.next_k[cls] += 1
        return cls * 1000 + k

    def smooth_noise(self, cells: int, amplitude: float) -> np.ndarray:
        """Low-frequency noise (bilinear upsampled random grid), [h, w, 1]."""
        gh, gw = max(2, cells * self.h // self.w), max(2, cells)
        grid = self.rng.standard_normal((gh, gw)).astype(np.float32)
        img = Image.fromarray(grid, mode="F").resize((self.w, self.h), Image.BILINEAR)
        return (np.asarray(img) * amplitude)[..., None]

    def jitter(self, base: tuple[float, float, float], spread: float) -> np.ndarray:
        return np.clip(np.asarray(base, np.float32) + self.rng.uniform(-spread, spread, 3), 0, 1)


def render_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw one street scene: sky, buildings, trees, road, sidewalks, poles, cars, people."""
    c = _Canvas(height, width, rng)
    h, w, yy, xx = height, width, c.yy, c.xx
    horizon = h * rng.uniform(0.38, 0.5)

    sky = c.jitter(_BASE[SKY], 0.08) * (0.8 + 0.35 * (yy / horizon)[..., None].clip(0, 1))
    c.paint(np.ones((h, w), bool), SKY, sky, SKY)

    # Buildings: a row of blocks standing on the horizon, each with its own facade and windows.
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        bw = rng.uniform(0.12, 0.3) * w
        top = horizon - rng.uniform(0.15, 0.38) * h
        mask = (xx >= x) & (xx < x + bw) & (yy >= top) & (yy < horizon + 2)
        facade = c.jitter(_BASE[BUILDING], 0.2)
        period_x, period_y = rng.uniform(6, 12) * w / 256, rng.uniform(7, 12) * h / 128
        window = ((xx - x) % period_x < period_x * 0.5) & ((yy - top) % period_y < period_y * 0.5)
        colour = facade * (1 - 0.35 * window[..., None]) + c.smooth_noise(8, 0.03)
        c.paint(mask, BUILDING, colour, c.new_instance(BUILDING))
        x += bw

    # Road (perspective trapezoid) with sidewalks either side, below the horizon.
    depth = ((yy - horizon) / (h - horizon)).clip(0, 1)
    half_road = (0.08 + 0.55 * depth) * w
    centre = w * rng.uniform(0.4, 0.6)
    below = yy >= horizon
    road = below & (np.abs(xx - centre) < half_road)
    shade = (0.75 + 0.35 * depth)[..., None]
    walk_colour = c.jitter(_BASE[SIDEWALK], 0.08) * shade + c.smooth_noise(24, 0.04)
    c.paint(below, SIDEWALK, walk_colour, SIDEWALK)
    lane = (np.abs(xx - centre) < 0.01 * w + 1) & ((yy * 0.15 / (depth + 0.2)) % 4 < 2)
    road_colour = c.jitter(_BASE[ROAD], 0.05) * shade + c.smooth_noise(32, 0.03)
    road_colour = np.where(lane[..., None], np.float32(0.85), road_colour)
    c.paint(road, ROAD, road_colour, ROAD)

    # Trees: leafy blobs on the sidewalk line.
    for _ in range(rng.integers(1, 4)):
        tx, ty = rng.uniform(0, w), horizon + rng.uniform(-0.05, 0.05) * h
        rx, ry = rng.uniform(0.05, 0.12) * w, rng.uniform(0.12, 0.25) * h
        mask = ((xx - tx) / rx) ** 2 + ((yy - ty) / ry) ** 2 < 1
        colour = c.jitter(_BASE[VEGETATION], 0.07) + c.smooth_noise(40, 0.06)
        c.paint(mask, VEGETATION, colour, VEGETATION)

    # Things, back to front: a bumper-to-bumper row of parked cars, single cars, people.
    things: list[tuple[float, str, float]] = []
    row_y = horizon + rng.uniform(0.3, 0.55) * (h - horizon)
    side = rng.choice([-1, 1])
    row_x = centre + side * (0.08 + 0.55 * (row_y - horizon) / (h - horizon)) * w * 0.7
    car_w = _car_width(row_y, horizon, h, w)
    for i in range(rng.integers(2, 5)):
        things.append((row_y, "car", row_x + (i - 1) * car_w * side))
    for _ in range(rng.integers(1, 4)):
        y = horizon + rng.uniform(0.15, 0.95) * (h - horizon)
        things.append((y, "car", centre + rng.uniform(-0.4, 0.4) * half_road_at(y, horizon, h, w)))
    for _ in range(rng.integers(1, 5)):
        y = horizon + rng.uniform(0.1, 0.9) * (h - horizon)
        things.append(
            (
                y,
                "person",
                centre
                + rng.choice([-1, 1]) * rng.uniform(1.05, 1.4) * half_road_at(y, horizon, h, w),
            )
        )
    for _ in range(rng.integers(1, 3)):
        y = horizon + rng.uniform(0.2, 0.8) * (h - horizon)
        things.append(
            (y, "pole", centre + rng.choice([-1, 1]) * 1.15 * half_road_at(y, horizon, h, w))
        )
    for y, kind, x0 in sorted(things, key=lambda t: t[0]):
        {"car": _car, "person": _person, "pole": _pole}[kind](c, x0, y, horizon)

    # Outline every instance (a boundary in the instance map darkens the photo) and add grain.
    inst = c.instance.astype(np.int32)
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= inst[:, 1:] != inst[:, :-1]
    edge[1:, :] |= inst[1:, :] != inst[:-1, :]
    photo = c.photo * np.where(edge, np.float32(0.55), np.float32(1.0))[..., None]
    photo += rng.normal(0, 0.012, photo.shape).astype(np.float32)
    photo = (photo.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    return Scene(c.label, c.instance, photo)


def half_road_at(y: float, horizon: float, h: int, w: int) -> float:
    return (0.08 + 0.55 * max(0.0, (y - horizon) / (h - horizon))) * w


def _car_width(y: float, horizon: float, h: int, w: int) -> float:
    return (0.05 + 0.22 * (y - horizon) / (h - horizon)) * w


def _car(c: _Canvas, cx: float, bottom: float, horizon: float) -> None:
    """A car: body, cabin with dark windows, black wheels; one instance, its own paint colour."""
    cw = _car_width(bottom, horizon, c.h, c.w)
    ch = cw * 0.55
    xx, yy = c.xx, c.yy
    body = (np.abs(xx - cx) < cw / 2) & (yy < bottom - ch * 0.15) & (yy >= bottom - ch * 0.6)
    cabin = (np.abs(xx - cx) < cw * 0.32) & (yy >= bottom - ch) & (yy < bottom - ch * 0.55)
    wheels = (
        (np.minimum(np.abs(xx - cx + cw * 0.3), np.abs(xx - cx - cw * 0.3)) < cw * 0.1)
        & (yy >= bottom - ch * 0.2)
        & (yy < bottom)
    )
    paint = c.rng.uniform(0.05, 0.95, 3).astype(np.float32)
    shade = (1.15 - 0.5 * ((yy - (bottom - ch)) / ch).clip(0, 1))[..., None]
    colour = np.broadcast_to(paint, (c.h, c.w, 3)) * shade
    colour = np.where(cabin[..., None], np.float32(0.15) + 0.2 * paint, colour)
    colour = np.where(wheels[..., None], np.float32(0.05), colour)
    c.paint(body | cabin | wheels, CAR, colour, c.new_instance(CAR))


def _person(c: _Canvas, cx: float, bottom: float, horizon: float) -> None:
    """A pedestrian: head and body, clothes in their own colour."""
    ph = (0.08 + 0.3 * (bottom - horizon) / (c.h - horizon)) * c.h
    pw = ph * 0.3
    xx, yy = c.xx, c.yy
    head = ((xx - cx) / (pw * 0.3)) ** 2 + ((yy - (bottom - ph * 0.9)) / (ph * 0.1)) ** 2 < 1
    torso = (np.abs(xx - cx) < pw / 2) & (yy >= bottom - ph * 0.8) & (yy < bottom)
    clothes = c.rng.uniform(0.05, 0.95, 3).astype(np.float32)
    colour = np.where(head[..., None], np.asarray([0.85, 0.65, 0.5], np.float32), clothes)
    c.paint(head | torso, PERSON, np.broadcast_to(colour, (c.h, c.w, 3)), c.new_instance(PERSON))


def _pole(c: _Canvas, cx: float, bottom: float, horizon: float) -> None:
    """A thin pole reaching above the horizon (stuff: its instance id is the class id)."""
    pw = max(1.0, (0.004 + 0.012 * (bottom - horizon) / (c.h - horizon)) * c.w)
    top = horizon - 0.25 * c.h
    mask = (np.abs(c.xx - cx) < pw / 2) & (c.yy >= top) & (c.yy < bottom)
    c.paint(mask, POLE, c.jitter(_BASE[POLE], 0.05), POLE)


def write_dataset(
    out: str | Path, n: int, size: tuple[int, int], seed: int, phase: str = "train"
) -> list[str]:
    """Write `n` scenes to `out/{phase}_label,_inst,_img}/<key>.png`; return the keys."""
    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    out = Path(out)
    keys = []
    for i in range(n):
        scene = render_scene(np.random.default_rng([seed, i]), *size)
        key = f"synth_{seed}_{i:05d}"
        for folder, array in (
            ("label", scene.label),
            ("inst", scene.instance),
            ("img", scene.photo),
        ):
            with atomic_path(out / f"{phase}_{folder}" / f"{key}.png") as tmp:
                Image.fromarray(array).save(tmp, format="PNG")
        keys.append(key)
    return keys
