"""int8 against bf16 through `p2phd render`'s pipeline on OpenVINO, and the int8 gate's numbers.

For the trained default model (models/default, copied) and the full-size 512p generator (ngf 64,
4 downsamples, 9 blocks; random weights, exported once to --full by make_package.py, or a
trained one given as --full with --full-name saying what it is):
1. calibration and gate: `p2phd build MODEL --backend B --precision int8 --calibration SRC
   --size 256x512` for each SRC (the default model: its synthetic training scenes, and real
   Cityscapes maps; the 512p generator: the real maps) and backend (OpenVINO; ONNX Runtime on the
   default model only: on the 512p generator its int8 gate alone takes minutes here);
2. speed: the real Cityscapes maps (shared/data/cityscapes-sample, resized to 256x512) through
   the batch renderer (`p2phd render`'s pipeline: decode threads, batching, inference, PNG encode
   and writes) with a warm bf16 and a warm int8 Renderer, rounds alternating so a slow spell on
   the shared machine hits both; the ratio of the medians is the result (and the same for
   Renderer.render alone over the decoded maps, without file I/O); on the default model also
   ONNX Runtime int8 against its fp32 (Renderer.render alone). The original pix2pixHD path
   (PyTorch eager fp32, batch 1, `p2phd bench`'s baseline without PNG decode and encode) runs on
   the first EAGER_IMAGES maps in each round too, for the ratios to it (issue 20's >= 14x on AMX).
Random weights are not a quality test: the 512p generator's gate numbers say how int8 error
accumulates through an untrained network, not how a trained one fares. Where the gate refuses
int8 (so `p2phd render --precision int8` would), the int8 engine is opened directly (as
`p2phd build` does to measure it) and timed in the same pipeline; the JSON says so.

    .venv/bin/python benchmarks/int8.py [--full /tmp/p2phd-512p] [--rounds 3]
    .venv/bin/python benchmarks/int8.py --full /tmp/z512/pkg --full-name "512p (trained briefly)" \
        -o benchmarks/results/int8-trained512-zen4/int8.json   # see that folder's README
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _shared import write_result
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CITYSCAPES = REPO.parent / "shared" / "data" / "cityscapes-sample"
SIZE = (256, 512)
EAGER_IMAGES = 4  # eager fp32 runs ~1 s per 512p image on 2 cores: a few per round
DEFAULT_OUT = REPO / "benchmarks" / "results" / "int8.json"


def p2phd(*args) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("p2phd")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)


def gate(model: Path, backend: str, calibration: str) -> dict:
    """Calibrate, build and gate; the quality.json entry (with the gate's verdict)."""
    size = f"{SIZE[0]}x{SIZE[1]}"
    done = p2phd("build", model, "--backend", backend, "--precision", "int8",
                 "--calibration", calibration, "--size", size)  # fmt: skip
    if done.returncode not in (0, 1) or "int8 gate" not in done.stdout:  # 1: the gate failed
        raise SystemExit(f"p2phd build {model} {backend} failed: {done.stderr[-2000:]}")
    entry = json.loads((model / "engines" / "quality.json").read_text())[f"{backend}:int8"]
    record = json.loads((model / "manifest.json").read_text())["calibration"]["int8"]
    keep = ("gate", "gate_numbers", "worst_image_psnr_db", "psnr_db", "p999_levels",
            "worst_levels", "over_4_levels_percent", "inputs", "reference")  # fmt: skip
    return {
        "backend": backend,
        "calibration": record["source"],
        "calibrated_on": len(record["calibration_maps"]),
        "kept_in_float": [k["op"] for k in record["kept_in_float"]],
        **{k: entry[k] for k in keep},
    }


def real_maps(folder: Path) -> Path:
    """The Cityscapes sample's label/instance maps resized (nearest) to SIZE, in the flat
    layout `render_throughput.batch_render` reads."""
    from p2phd.engine.batch.render import list_images

    for role, sub in (("label", "train_label"), ("instance", "train_inst")):
        (folder / sub).mkdir(parents=True)
        for path in list_images(CITYSCAPES, role):
            image = Image.open(path).resize(SIZE[::-1], Image.Resampling.NEAREST)
            image.save(folder / sub / path.name)
    return folder


def renderer(model: Path, precision: str, options):
    """A warm OpenVINO Renderer; int8 refused by its gate is timed with the engine opened
    directly in the same renderer (returned with the refusal)."""
    from p2phd.common.errors import ConfigError
    from p2phd.engine.backends.openvino import OpenVINOBackend
    from p2phd.engine.core.renderer import Renderer

    try:
        return Renderer(model, "openvino", precision, options=options), None
    except ConfigError as e:
        r = Renderer(model, "openvino", "bf16", options=options)
        r.backend.close()
        r.backend = OpenVINOBackend(r.package, "int8", options)
        return r, str(e)


def decoded(data: Path, label_nc: int, count: int | None = None):
    """The first `count` label and instance maps of `data` (all by default), decoded and stacked."""
    from p2phd.common.decode import decode_pair

    files = zip(*(sorted((data / d).iterdir()) for d in ("train_label", "train_inst")), strict=True)
    maps = [decode_pair(lab, inst, label_nc) for lab, inst in list(files)[:count]]
    return tuple(np.stack([m[i] for m in maps]) for i in (0, 1))


def eager_alone(baseline, labels: np.ndarray, instances: np.ndarray) -> float:
    """images/s of the original pix2pixHD path (bench's baseline), one map at a time."""
    t = time.perf_counter()
    for i in range(len(labels)):
        x = baseline.preprocess(labels[i : i + 1], instances[i : i + 1])
        baseline.postprocess(baseline.infer(x))
    return len(labels) / (time.perf_counter() - t)


def speed(model: Path, data: Path, rounds: int, batch: int, workers: int) -> dict:
    """images/s of bf16 and int8 through `p2phd render`'s pipeline over the files, of
    Renderer.render alone over the decoded maps (no file I/O), and of PyTorch eager fp32 on a
    few of them, all five alternating."""
    from render_throughput import batch_render, engine_alone  # benchmarks/: this script's folder

    from p2phd.engine.apps.bench.baseline import OriginalPipeline
    from p2phd.engine.backends.base import EngineOptions

    options = EngineOptions((1, batch, batch), [SIZE])
    renderers = {p: renderer(model, p, options) for p in ("bf16", "int8")}
    baseline = OriginalPipeline(renderers["bf16"][0].package)
    labels, instances = decoded(data, renderers["bf16"][0].manifest.label_nc)
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="p2phd-int8-out-") as tmp:
        for p, (r, _) in renderers.items():  # warm: compile both shapes
            batch_render(r, data, Path(tmp) / f"warm-{p}", batch, workers)
        for k in range(rounds):
            for p, (r, _) in renderers.items():
                out = Path(tmp) / f"{p}{k}"
                render = batch_render(r, data, out, batch, workers)
                runs.setdefault(f"render {p}", []).append(render)
                runs.setdefault(f"engine {p}", []).append(engine_alone(r, labels, instances, batch))
            few = slice(0, EAGER_IMAGES)
            runs.setdefault("eager fp32", []).append(
                eager_alone(baseline, labels[few], instances[few])
            )
            done = ", ".join(f"{p} {v[-1]:.2f}" for p, v in runs.items())
            print(f"  round {k + 1} (images/s): {done}", flush=True)
    median = {p: float(np.median(v)) for p, v in runs.items()}
    for r, _ in renderers.values():
        r.close()
    baseline.close()
    return {
        "batch": batch,
        "workers": workers,
        "images_per_round": len(labels),
        "images_per_s": {p: round(v, 3) for p, v in median.items()},
        "ms_per_image": {p: round(1e3 / v, 1) for p, v in median.items()},
        "int8_vs_bf16": {
            how: round(median[f"{how} int8"] / median[f"{how} bf16"], 3)
            for how in ("render", "engine")
        },
        "vs_eager_fp32": {
            p: round(median[p] / median["eager fp32"], 2) for p in median if p != "eager fp32"
        },
        "rounds_images_per_s": {p: [round(x, 3) for x in v] for p, v in runs.items()},
        "int8_gate_refused": renderers["int8"][1],
    }


def onnxruntime_speed(model: Path, data: Path, rounds: int, batch: int) -> dict:
    """ONNX Runtime fp32 against int8, Renderer.render alone over the decoded maps, alternating:
    int8 there is for parity, and this says what it costs."""
    from render_throughput import engine_alone

    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.renderer import Renderer

    options = EngineOptions((1, batch, batch), [SIZE])
    renderers = {p: Renderer(model, "onnxruntime", p, options=options) for p in ("fp32", "int8")}
    labels, instances = decoded(data, renderers["fp32"].manifest.label_nc, 2 * batch)
    runs: dict[str, list[float]] = {p: [] for p in renderers}
    for _ in range(rounds + 1):  # the first round warms up
        for p, r in renderers.items():
            runs[p].append(engine_alone(r, labels, instances, batch))
    median = {p: float(np.median(v[1:])) for p, v in runs.items()}
    return {
        "batch": batch,
        "ms_per_image": {p: round(1e3 / v, 1) for p, v in median.items()},
        "int8_vs_fp32": round(median["int8"] / median["fp32"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", default="/tmp/p2phd-512p", help="the 512p package (made if absent)")
    p.add_argument(
        "--full-name", default="512p (random weights)", help="what --full is, for the results"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    if not CITYSCAPES.is_dir():
        raise SystemExit(f"{CITYSCAPES}: the real Cityscapes sample is needed (see shared/README)")

    from p2phd.engine.apps.bench.harness import OtherLoad
    from p2phd.engine.apps.bench.machine import cpu_peak, describe_machine

    full = Path(args.full)
    if not (full / "manifest.json").is_file():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_package.py"), "-o",
                        str(full), "--ngf", "64", "--n-downsample", "4", "--n-blocks", "9",
                        "--label-nc", "35"], check=True)  # fmt: skip
    others = OtherLoad()
    machine = describe_machine()
    result = {
        "command": "benchmarks/int8.py " + " ".join(argv or sys.argv[1:]),
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "machine": {
            "cpu": machine["cpu_model"],
            "cores": machine["physical_cores"],
            "flags": machine["flags"],
            "peak_gmacs_per_s": {
                q: round(cpu_peak(q).macs_per_s / 1e9, 1) for q in ("bf16", "int8")
            },
        },
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="p2phd-int8-") as tmp:
        data = real_maps(Path(tmp) / "maps")
        default = Path(shutil.copytree(REPO / "models" / "default", Path(tmp) / "default"))
        cases = {
            "default (trained)": (default, [("synthetic", "openvino"), ("synthetic", "onnxruntime"),
                                            (str(CITYSCAPES), "openvino"),
                                            (str(CITYSCAPES), "onnxruntime")]),
            args.full_name: (full, [(str(CITYSCAPES), "openvino")]),
        }  # fmt: skip
        for name, (model, gates) in cases.items():
            print(f"{name}: gates", flush=True)
            entry = {"gates": [gate(model, b, cal) for cal, b in gates]}
            print(f"{name}: speed (calibrated on {gates[-1][0]})", flush=True)
            entry["speed"] = speed(model, data, args.rounds, args.batch, args.workers)
            if any(b == "onnxruntime" for _, b in gates):
                entry["onnxruntime_engine_alone"] = onnxruntime_speed(
                    model, data, args.rounds, args.batch
                )
            result["models"][name] = entry
    result["other_load"] = others.measure()
    write_result(Path(args.output), result)
    for name, entry in result["models"].items():
        s = entry["speed"]
        print(f"{name}: p2phd render int8 {s['ms_per_image']['render int8']} ms/image vs bf16 "
              f"{s['ms_per_image']['render bf16']}: {s['int8_vs_bf16']['render']}x "
              f"(engine alone {s['int8_vs_bf16']['engine']}x), "
              f"{s['vs_eager_fp32']['render int8']}x PyTorch eager fp32; gates: "
              + "; ".join(f"{g['backend']}/{Path(g['calibration']).name} {g['gate']}"
                          for g in entry["gates"]))  # fmt: skip
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
