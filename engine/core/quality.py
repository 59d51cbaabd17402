"""The engines' quality report: how far each built engine is from the fp32 PyTorch reference.

`p2phd build` renders fixed synthetic inputs with the new engine and with the reference and
records PSNR (on the uint8 images a user sees) and the max abs error (on the float outputs) in
`MODEL_DIR/engines/quality.json`, keyed "<backend>:<precision>". A reduced precision below
`MIN_PSNR_DB` is never chosen by `precision="auto"`.

int8 is a gate, not a default: measured on held-out calibration maps, it passes when every image
is at least `MIN_PSNR_DB` and the 99.9th-percentile pixel error at most `INT8_MAX_P999_LEVELS`
levels (PSNR alone averages a few badly wrong pixels away); `--precision int8` runs only where
its entry passed, and "auto" never picks it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from p2phd.common.atomic import atomic_write_bytes
from p2phd.common.errors import PackageError
from p2phd.common.file_lock import locked

QUALITY_FILE = "quality.json"
REPORT_LOCK = ".quality.lock"  # beside it: see _writing
MIN_PSNR_DB = 40.0


def synthetic_maps(
    batch: int, height: int, width: int, label_nc: int, seed: int = 2018
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic label [B,H,W] uint8 and instance [B,H,W] int32 maps made of random blobs.

    Stuff classes fill the background in horizontal bands; "thing" blobs (rectangles and discs)
    carry Cityscapes-style ids class*1000+k, so edges and per-instance features are exercised.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, height, width), np.uint8)
    instances = np.zeros((batch, height, width), np.int32)
    yy, xx = np.mgrid[:height, :width]
    for b in range(batch):
        cuts = np.sort(rng.integers(1, height, size=3))
        for top, bottom in zip([0, *cuts], [*cuts, height], strict=True):
            labels[b, top:bottom] = rng.integers(label_nc)
            instances[b, top:bottom] = labels[b, top:bottom]
        for k in range(6):
            cls = int(rng.integers(label_nc))
            cy, cx = rng.integers(height), rng.integers(width)
            ry, rx = rng.integers(2, max(3, height // 4)), rng.integers(2, max(3, width // 4))
            if k % 2:
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
            labels[b][mask] = cls
            instances[b][mask] = cls * 1000 + k
    return labels, instances


def synthetic_images(
    batch: int, height: int, width: int, channels: int = 3, seed: int = 2018
) -> np.ndarray:
    """Deterministic uint8 images [B,H,W,C] for image-input models: the label blobs of
    `synthetic_maps` painted in random colours, plus noise, so there are edges and texture."""
    labels, _ = synthetic_maps(batch, height, width, 256, seed)
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (256, channels))
    noise = rng.normal(0, 12, (batch, height, width, channels))
    return np.clip(palette[labels] + noise, 0, 255).astype(np.uint8)


def psnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (inf when identical)."""
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def measure(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Compare two float generator outputs [B,3,H,W] (tanh range): PSNR on uint8, max abs error."""
    from p2phd.engine.kernels import to_uint8_rgb

    ref = np.ascontiguousarray(reference, np.float32)
    cand = np.ascontiguousarray(candidate, np.float32)
    psnr = psnr_db(to_uint8_rgb(ref), to_uint8_rgb(cand))
    return {
        "psnr_db": round(psnr, 3) if math.isfinite(psnr) else None,  # JSON has no inf
        "identical_uint8": not math.isfinite(psnr),
        "max_abs_err": float(np.max(np.abs(ref - cand))),
        "mean_abs_err": float(np.mean(np.abs(ref - cand))),
    }


def report_path(engines_dir: Path) -> Path:
    return Path(engines_dir) / QUALITY_FILE


def read_report(engines_dir: Path) -> dict[str, dict]:
    """The quality report of a package's engines ({} when none was built)."""
    path = report_path(engines_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{path}: not valid JSON ({e}); rebuild with 'p2phd build'") from e
    if not isinstance(data, dict):
        raise PackageError(f"{path}: expected an object of '<backend>:<precision>' entries")
    return data


def _writing(engines_dir: Path):
    """The report's lock: its writers read, change and replace it one at a time."""
    return locked(Path(engines_dir) / REPORT_LOCK, str(report_path(engines_dir)))


def write_entry(engines_dir: Path, key: str, entry: dict) -> Path:
    """Merge one '<backend>:<precision>' entry into quality.json, written atomically."""
    with _writing(engines_dir):
        report = read_report(engines_dir)
        report[key] = {**entry, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return _replace_report(engines_dir, report)


def _replace_report(engines_dir: Path, report: dict[str, dict]) -> Path:
    path = report_path(engines_dir)
    atomic_write_bytes(path, json.dumps(report, indent=2, sort_keys=True).encode() + b"\n")
    return path


def measured_on(entry: dict, content_key: str | None) -> bool:
    """Whether a report entry was measured on the export whose content hash is `content_key`
    (a re-export leaves engines/ alone); entries written before the hash was recorded count."""
    return not content_key or entry.get("package", content_key) == content_key


def allows(report: dict[str, dict], key: str, content_key: str | None = None) -> tuple[bool, str]:
    """Whether a reduced precision `key` may be chosen by default, and why (or why not).

    With `content_key` (the package's content hash), an entry measured on another export of the
    package (a re-export leaves engines/ alone) does not count.
    """
    entry = report.get(key)
    if entry is None:
        return False, f"no quality report for {key} (run 'p2phd build' with that precision)"
    if not measured_on(entry, content_key):
        return False, (
            f"the {key} quality report was measured on another export of this package "
            "(run 'p2phd build' again)"
        )
    if entry.get("identical_uint8"):
        return True, f"{key} renders images identical to the fp32 reference"
    psnr = entry.get("psnr_db")
    if psnr is None or psnr < MIN_PSNR_DB:
        return False, f"{key} measured {psnr} dB PSNR, below the {MIN_PSNR_DB:g} dB floor"
    return True, f"{key} measured {psnr:.1f} dB PSNR (>= {MIN_PSNR_DB:g} dB)"


# -- int8: a gate, not a default --------------------------------------------------------------

INT8_MAX_P999_LEVELS = 8  # 99.9% of pixel channels within 8 levels of fp32 (of 255)


def local_error(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Per-image and per-pixel error of two float generator outputs [B,3,H,W] on the uint8
    images: the worst image's PSNR, the 99.9th percentile and the maximum of the absolute
    error in levels, and the share of pixel channels more than 4 levels off."""
    from p2phd.engine.kernels import to_uint8_rgb

    ref = to_uint8_rgb(np.ascontiguousarray(reference, np.float32))
    cand = to_uint8_rgb(np.ascontiguousarray(candidate, np.float32))
    diff = np.abs(ref.astype(np.int16) - cand.astype(np.int16))
    worst = min(psnr_db(r, c) for r, c in zip(ref, cand, strict=True))
    return {
        "worst_image_psnr_db": round(worst, 3) if math.isfinite(worst) else None,
        "p999_levels": float(np.percentile(diff, 99.9)),
        "worst_levels": int(diff.max()),
        "over_4_levels_percent": round(float(np.mean(diff > 4)) * 100, 4),
    }


def int8_gate(entry: dict) -> tuple[bool, str]:
    """Whether measured int8 numbers pass the gate, and the numbers: every held-out image at
    least MIN_PSNR_DB, and the 99.9th-percentile error at most INT8_MAX_P999_LEVELS levels."""
    psnr, p999 = entry.get("worst_image_psnr_db"), entry.get("p999_levels")
    numbers = (
        f"worst held-out image {psnr} dB PSNR (floor {MIN_PSNR_DB:g}), 99.9th-percentile "
        f"error {p999} levels (bound {INT8_MAX_P999_LEVELS}), worst pixel "
        f"{entry.get('worst_levels')} levels"
    )
    passed = p999 is not None and p999 <= INT8_MAX_P999_LEVELS
    passed = passed and (psnr is None or psnr >= MIN_PSNR_DB)  # None: identical images
    return passed, numbers


def allows_int8(
    report: dict[str, dict], key: str, content_key: str | None, model_dir: str = "MODEL_DIR"
) -> tuple[bool, str]:
    """Whether `key` ("<backend>:int8") may run: its gate was measured on this export's int8
    graph and passed. int8 is never chosen by "auto"; this is checked when it is asked for."""
    entry = report.get(key)
    build = f"p2phd build {model_dir} --backend {{}} --precision int8 --calibration DIR"
    if entry is None:
        backend = key.split(":")[0]
        return False, f"no int8 quality gate measured for {key}: run '{build.format(backend)}'"
    if not measured_on(entry, content_key):
        return False, f"the {key} gate was measured on another export of this package; rebuild"
    passed, numbers = int8_gate(entry)
    return passed, f"{key} {'passed' if passed else 'failed'} the int8 gate: {numbers}"


def carry_over(engines_dir: Path, old_key: str, new_key: str) -> None:
    """After a new int8 graph is written into the package (its content hash changes, its fp32
    generator does not): entries measured on the old export count for the new one, except the
    int8 ones, which measured the graph just replaced."""
    with _writing(engines_dir):
        report = read_report(engines_dir)
        if not report:
            return
        kept = {
            key: {**entry, "package": new_key} if entry.get("package") == old_key else entry
            for key, entry in report.items()
            if not key.endswith(":int8")
        }
        _replace_report(engines_dir, kept)
