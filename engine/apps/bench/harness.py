"""The benchmark matrix: every backend x precision x size x batch, timed stage by stage.

One case renders synthetic label + instance maps from PNG bytes to PNG bytes: decode, preprocess
(fit + kernels into the dense input), infer, postprocess (uint8), encode; warm-up runs first
(engine compilation for a new size falls there), then timed runs. The baseline (the original
pix2pixHD path, batch 1) runs on the same maps. Combinations a backend cannot run here are rows
with status "skipped" and the reason; a case that breaks is "failed" with its error.

Peak memory is the process's resident-set high-water mark (VmHWM in /proc/self/status), reset
before each case by writing 5 to /proc/self/clear_refs; where that is refused, getrusage's
ru_maxrss (the whole process's lifetime peak) is reported instead, and the JSON says which.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from p2phd.common.decode import decode_pair
from p2phd.common.errors import ConfigError, P2PHDError
from p2phd.engine.apps.bench.gpu import (
    CudaEventTimer,
    Nvtx,
    describe_gpu,
    device_memory_used,
    device_timer,
)
from p2phd.engine.apps.bench.machine import Peak, cpu_peak, describe_machine, gpu_peak
from p2phd.engine.apps.bench.macs import count_model_macs
from p2phd.engine.backends import backend_class, backend_names, precisions
from p2phd.engine.backends.base import MAX_BATCH
from p2phd.engine.core import quality
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.style import Style

log = logging.getLogger(__name__)

STAGES = ("decode", "preprocess", "infer", "postprocess", "encode")
BASELINE = "baseline"


@dataclass
class BenchConfig:
    """What to measure: the matrix and how many runs of each case."""

    model_dir: Path
    backends: tuple[str, ...] = field(default_factory=lambda: backend_names("cpu"))
    precisions: tuple[str, ...] = ("fp32", "bf16")
    batches: tuple[int, ...] = (1, 2, 4)
    sizes: tuple[tuple[int, int], ...] = ((256, 512),)
    warmup: int = 2
    iters: int = 10
    baseline: bool = True
    seed: int = 2018
    layer_times: bool = True  # per-layer profile where the backend has one (TensorRT)

    def __post_init__(self) -> None:
        self.model_dir = Path(self.model_dir)
        for name in self.backends:
            backend_class(name)  # ConfigError for an unknown name
        unknown = [p for p in self.precisions if p not in precisions()]
        if unknown:
            known = ", ".join(precisions())
            raise ConfigError(f"unknown precision {unknown[0]!r}; choose {known}")
        if not self.batches or min(self.batches) < 1 or max(self.batches) > MAX_BATCH:
            raise ConfigError(f"batch sizes must be 1 to {MAX_BATCH}, got {list(self.batches)}")
        if self.warmup < 0 or self.iters < 1:
            raise ConfigError(f"need warmup >= 0 and iters >= 1, got {self.warmup}, {self.iters}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        d["sizes"] = [f"{h}x{w}" for h, w in self.sizes]
        return d


# -- peak memory ----------------------------------------------------------------------------------


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Resident-set high-water mark of this process over one case."""

    def __init__(self):
        self.method = "VmHWM, reset per case via /proc/self/clear_refs"
        if not self._reset() or _status_kib("VmHWM") is None:
            self.method = "ru_maxrss (process lifetime peak, not reset per case)"

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def start(self) -> None:
        self._reset()
        self.rss_start = _status_kib("VmRSS") or 0

    def peak_kib(self) -> int:
        if self.method.startswith("VmHWM"):
            return _status_kib("VmHWM") or 0
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def measure(self) -> dict:
        peak = self.peak_kib()
        return {
            "peak_rss_mib": round(peak / 1024, 1),
            "peak_rss_growth_mib": round(max(0, peak - self.rss_start) / 1024, 1),
        }


class OtherLoad:
    """How much CPU other processes took while we measured: busy time of all CPUs
    (/proc/stat, steal included) minus this process's own CPU time, over wall time x CPUs.
    Unlike the load average, our own threads do not count."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        return time.monotonic(), busy, t.user + t.system

    def measure(self) -> dict:
        end = self._sample()
        if self.start is None or end is None:
            return {"other_cpu_share": None, "how": "no /proc/stat"}
        wall = end[0] - self.start[0]
        others = (end[1] - self.start[1]) - (end[2] - self.start[2])
        cpus = os.cpu_count() or 1
        return {
            "other_cpu_share": round(max(0.0, others) / (wall * cpus), 3) if wall > 0 else None,
            "other_cpu_s": round(max(0.0, others), 1),
            "wall_s": round(wall, 1),
            "how": "all CPUs' busy time (/proc/stat, steal included) minus this process's",
        }


# -- one pipeline (engine or baseline) ------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def synthetic_pngs(
    batch: int, h: int, w: int, label_nc: int, seed: int
) -> list[tuple[bytes, bytes]]:
    """(label PNG, 16-bit instance PNG) bytes of quality.synthetic_maps, one pair per image."""
    labels, instances = quality.synthetic_maps(batch, h, w, label_nc, seed)
    return [
        (_png(lab), _png(inst.astype(np.uint16)))
        for lab, inst in zip(labels, instances, strict=True)
    ]


class EnginePipeline:
    """The engine's stages around a Renderer, as it renders: fit + kernels, backend, uint8
    conversion; or, where the backend renders from compact maps on the GPU (`render_maps`),
    fit + instance compaction on the host and everything else in the infer stage."""

    def __init__(self, renderer):
        self.renderer = renderer
        self.backend = renderer.backend
        self.name = renderer.backend.name
        self.precision = renderer.backend.precision
        self.on_device = self.backend.renders_maps
        self._fitted = None  # the last preprocess's size_policy.fit: its maps and restore
        self._dense: np.ndarray | None = None  # the last input, kept for the quality check

    def preprocess(self, labels: np.ndarray, instances: np.ndarray | None):
        from p2phd.engine.core.size_policy import fit

        r = self.renderer
        fitted = fit(labels, instances, r.manifest.size_multiple, r.size_policy)
        self._fitted = fitted
        styles = [Style(seed=0)] * len(labels)
        if self.on_device:
            compact, table = r._instance_inputs(fitted.labels, fitted.instances, styles, None)
            return np.ascontiguousarray(fitted.labels), compact, table
        if self._dense is not None:  # the previous run's input is read by now: reuse it
            r.release(self._dense)
        # as the renderer builds it: the one-hot channels only where the backend reads them
        one_hot = self.backend.reads_one_hot
        self._dense = r.dense_input(fitted.labels, fitted.instances, styles, one_hot=one_hot)
        return self._dense

    def infer(self, x) -> np.ndarray:
        if self.on_device:
            m = self.renderer.manifest
            return self.backend.render_maps(*x, m.instance, m.feat_num)
        return self.backend.infer_labeled(x, self._fitted.labels)  # as the renderer calls it

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        from p2phd.engine.kernels import to_uint8_rgb

        if self.on_device:  # already uint8 RGB
            return self._fitted.restore(out)
        return self._fitted.restore(to_uint8_rgb(np.ascontiguousarray(out, np.float32)))

    def quality_pair(self, x, out) -> tuple[np.ndarray, np.ndarray]:
        """(dense input, float output) of the last run, for the quality check: the whole input
        the reference reads, built again where the timed one left its one-hot channels to the
        backend's labels; on the device path the last maps' input is built on the host and run
        through `infer`."""
        if not self.on_device and self.backend.reads_one_hot:
            return x, out
        f = self._fitted
        dense = self.renderer.dense_input(f.labels, f.instances, [Style(seed=0)] * len(f.labels))
        return dense, out if not self.on_device else self.backend.infer(dense)

    def describe(self) -> dict:
        return self.renderer.describe()

    def close(self) -> None:
        self.renderer.close()


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "median": round(float(np.median(a)), 3),
        "p90": round(float(np.percentile(a, 90)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "mean": round(float(a.mean()), 3),
        "min": round(float(a.min()), 3),
    }


@dataclass
class Timings:
    """Per-iteration stage times (ms) of the timed runs of one case, and the last outputs."""

    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    total: list[float] = field(default_factory=list)
    infer_timer: str = "perf_counter"
    dense: np.ndarray | None = None
    output: np.ndarray | None = None


class StageClock:
    """Times one pipeline stage at a time inside an NVTX range; the infer stage on the CUDA
    events the backend records around its device work, where it does (device time only)."""

    def __init__(self, nvtx: Nvtx, events: CudaEventTimer | None):
        self.nvtx = nvtx
        self.events = events
        self.ms: dict[str, float] = {}

    def run(self, name: str, fn: Callable, *args):
        with self.nvtx.range(name):
            t0 = time.perf_counter()
            result = fn(*args)
            if name == "infer" and self.events is not None:
                self.ms[name] = self.events.elapsed_ms()
            else:
                self.ms[name] = (time.perf_counter() - t0) * 1e3
            return result


def decode_batch(pngs: list[tuple[bytes, bytes]], label_nc: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode and validate (label, instance) PNG pairs into stacked [B,H,W] arrays."""
    pairs = [decode_pair(lab, inst, label_nc) for lab, inst in pngs]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def time_pipeline(
    pipe, pngs: list[tuple[bytes, bytes]], label_nc: int, warmup: int, iters: int, nvtx: Nvtx
) -> Timings:
    """Run decode -> preprocess -> infer -> postprocess -> encode warmup + iters times."""
    from p2phd.common.png import encode_png

    backend = getattr(pipe, "backend", None)
    events = device_timer(backend)
    t = Timings(infer_timer="cuda_event" if events else "perf_counter")
    try:
        for i in range(warmup + iters):
            clock = StageClock(nvtx, events)
            labels, instances = clock.run("decode", decode_batch, pngs, label_nc)
            x = clock.run("preprocess", pipe.preprocess, labels, instances)
            out = clock.run("infer", pipe.infer, x)
            images = clock.run("postprocess", pipe.postprocess, out)
            clock.run("encode", lambda imgs: [encode_png(img) for img in imgs], images)
            if i >= warmup:
                for name in STAGES:
                    t.stages[name].append(clock.ms[name])
                t.total.append(sum(clock.ms.values()))
        quality_pair = getattr(pipe, "quality_pair", None)
        t.dense, t.output = quality_pair(x, out) if quality_pair else (x, out)
    finally:
        if events is not None:
            backend.device_timer = None
            events.close()
    return t


# -- the matrix -----------------------------------------------------------------------------------


def _skip_reason(backend: str, precision: str) -> str | None:
    cls = backend_class(backend)
    reason = cls.availability()
    if reason:
        return reason
    if precision not in cls.precisions:
        return f"{backend} has no {precision} mode (it runs {', '.join(cls.precisions)})"
    return cls.reduced_unsupported(precision)


class Bench:
    """Runs a BenchConfig and returns the rows and their context as one JSON-ready dict."""

    def __init__(self, config: BenchConfig, progress: Callable[[str], None] = log.info):
        self.config = config
        self.package = ModelPackage(config.model_dir)
        self.manifest = self.package.manifest
        if self.manifest.image_input:
            raise ConfigError(
                f"{config.model_dir}: p2phd bench times label-map packages (pix2pixHD); this one "
                "takes images (pix2pix/CycleGAN): benchmarks/pix2pix.py times those"
            )
        self.progress = progress
        self.nvtx = Nvtx()
        self.memory = PeakMemory()
        self.gpu = describe_gpu()
        self._graph = None
        self._macs: dict[tuple[int, int], int] = {}
        self._reference_pipe = None
        self._references: dict[tuple[int, int, int], np.ndarray] = {}
        m = self.manifest.size_multiple
        for h, w in config.sizes:
            if h % m or w % m:
                raise ConfigError(f"--size {h}x{w}: not a multiple of this model's {m}")

    # -- helpers --------------------------------------------------------------------------------

    def macs_per_image(self, h: int, w: int) -> int:
        if (h, w) not in self._macs:
            import onnx

            if self._graph is None:
                self._graph = onnx.load(str(self.package.generator_path))
            shape = (1, self.manifest.input_channels, h, w)
            self._macs[(h, w)] = count_model_macs(self._graph, shape).total
        return self._macs[(h, w)]

    def peak_for(self, device: str, precision: str) -> Peak:
        if device.startswith("cuda") and self.gpu:
            g = self.gpu
            return gpu_peak(g["name"], g["capability"], g["sms"], g["clock_khz"])
        return cpu_peak(precision if precision in ("bf16", "int8") else "fp32")

    def reference_output(self, x: np.ndarray, key: tuple[int, int, int]) -> np.ndarray | None:
        """The fp32 PyTorch output for dense input `x` (cached per batch and size)."""
        if key not in self._references:
            if self._reference_pipe is None:
                if backend_class("torch").availability():
                    return None
                from p2phd.engine.apps.bench.baseline import OriginalPipeline

                self._reference_pipe = OriginalPipeline(self.package)
            self._references[key] = self._reference_pipe.reference(x)
        return self._references[key]

    # -- cases ----------------------------------------------------------------------------------

    def _row(self, name: str, precision: str, batch: int, h: int, w: int) -> dict:
        return {
            "backend": name,
            "precision": precision,
            "batch": batch,
            "size": f"{h}x{w}",
            "status": "ok",
        }

    def _measure(self, pipe, row: dict, h: int, w: int, batch: int) -> Timings:
        c = self.config
        pngs = synthetic_pngs(batch, h, w, self.manifest.label_nc, c.seed)
        gpu_before = device_memory_used()
        self.memory.start()
        t = time_pipeline(pipe, pngs, self.manifest.label_nc, c.warmup, c.iters, self.nvtx)
        row |= self.memory.measure()
        gpu_after = device_memory_used()
        if gpu_before is not None and gpu_after is not None:
            row["gpu_memory_growth_mib"] = round((gpu_after - gpu_before) / 2**20, 1)
        latency = _percentiles(t.total)
        infer = _percentiles(t.stages["infer"])
        row["latency_ms"] = latency
        row["images_per_s"] = round(batch * 1e3 / latency["median"], 3)
        row["infer_ms"] = infer
        row["infer_images_per_s"] = round(batch * 1e3 / infer["median"], 3)
        row["infer_timer"] = t.infer_timer
        row["stages_ms"] = {s: round(float(np.median(v)), 3) for s, v in t.stages.items()}
        row["runs"] = {"warmup": c.warmup, "timed": c.iters}
        macs = self.macs_per_image(h, w) * batch
        described = pipe.describe()
        device = described.get("device", "cpu")
        # a first convolution computed from the labels is table lookups, not multiply-adds
        lookups = described.get("first_conv_macs_per_pixel", 0) * h * w * batch
        peak = self.peak_for(device, row["precision"])
        seconds = infer["median"] / 1e3
        row["gmacs"] = round(macs / 1e9, 3)
        if lookups:
            row["table_lookup_gmacs"] = round(lookups / 1e9, 3)
        row["achieved_gmacs_per_s"] = round(macs / seconds / 1e9, 2)
        row["peak_gmacs_per_s"] = round(peak.macs_per_s / 1e9, 1)
        row["peak_precision"] = peak.precision
        row["efficiency_pct"] = (
            round(100 * (macs - lookups) / seconds / peak.macs_per_s, 2)
            if peak.macs_per_s
            else None
        )
        if device.startswith("cuda") and self.gpu and self.gpu.get("test_double"):
            row["test_double"] = "TensorRT/CUDA test double: control flow only, not a GPU number"
            row["efficiency_pct"] = None
        return t

    def _quality(self, row: dict, t: Timings, key: tuple[int, int, int]) -> None:
        reference = self.reference_output(t.dense, key)
        if reference is None:
            row["quality"] = {"skipped": "no fp32 PyTorch reference (torch is not installed)"}
            return
        measured = quality.measure(reference, t.output) | quality.local_error(reference, t.output)
        row["quality"] = {**measured, "reference": "torch:fp32"}

    def run_baseline(self, h: int, w: int) -> dict:
        row = self._row(BASELINE, "fp32", 1, h, w)
        reason = backend_class("torch").availability()
        if reason:
            return row | {"status": "skipped", "reason": reason}
        from p2phd.engine.apps.bench.baseline import OriginalPipeline

        if self._reference_pipe is None:
            self._reference_pipe = OriginalPipeline(self.package)
        pipe = self._reference_pipe
        self.progress(f"baseline (original pix2pixHD, torch eager fp32) 1x{h}x{w}")
        self._measure(pipe, row, h, w, 1)
        row["describe"] = pipe.describe()
        return row

    def run_backend(self, backend: str, precision: str) -> list[dict]:
        """Every size and batch of one backend at one precision (one engine, reused)."""
        c = self.config
        cases = [(h, w, b) for h, w in c.sizes for b in c.batches]
        reason = _skip_reason(backend, precision)
        if reason:
            return [
                self._row(backend, precision, b, h, w) | {"status": "skipped", "reason": reason}
                for h, w, b in cases
            ]
        from p2phd.engine.backends.base import EngineOptions
        from p2phd.engine.core.renderer import Renderer

        options = EngineOptions((min(c.batches), min(c.batches), max(c.batches)), list(c.sizes))
        try:
            renderer = Renderer(c.model_dir, backend, precision, "reject", options=options)
        except P2PHDError as e:
            return [
                self._row(backend, precision, b, h, w) | {"status": "skipped", "reason": str(e)}
                for h, w, b in cases
            ]
        pipe = EnginePipeline(renderer)
        rows = []
        try:
            for h, w, b in cases:
                row = self._row(backend, precision, b, h, w)
                self.progress(f"{backend} {precision} {b}x{h}x{w}")
                try:
                    t = self._measure(pipe, row, h, w, b)
                    if b == min(c.batches):
                        self._quality(row, t, (b, h, w))
                        layers = c.layer_times and pipe.backend.layer_times(t.dense)
                        if layers:
                            row["layer_times_ms"] = layers[:30]
                except P2PHDError as e:
                    rows.append(row | {"status": "skipped", "reason": str(e)})
                    continue
                except Exception as e:  # noqa: BLE001  (one broken case must not end the matrix)
                    log.exception("%s %s %dx%dx%d failed", backend, precision, b, h, w)
                    rows.append(row | {"status": "failed", "reason": f"{type(e).__name__}: {e}"})
                    continue
                row["describe"] = pipe.describe()
                rows.append(row)
        finally:
            pipe.close()
        return rows

    def run(self) -> dict:
        c = self.config
        started = time.time()
        load_before = os.getloadavg()
        others = OtherLoad()
        rows: list[dict] = []
        if c.baseline:
            rows += [self.run_baseline(h, w) for h, w in c.sizes]
        for backend in c.backends:
            for precision in c.precisions:
                rows += self.run_backend(backend, precision)
        _speedups(rows)
        return {
            "format": "p2phd-bench/1",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1),
            "config": c.to_json(),
            "model": {
                "dir": str(self.package.path),
                "architecture": self.manifest.architecture,
                "input_channels": self.manifest.input_channels,
                "gmacs_per_image": {
                    f"{h}x{w}": round(v / 1e9, 3) for (h, w), v in self._macs.items()
                },
            },
            "machine": describe_machine() | ({"gpu": self.gpu} if self.gpu else {}),
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
            "other_load": others.measure(),
            "memory_method": self.memory.method,
            "latency_definition": "one batch, PNG bytes in to PNG bytes out (sum of the stages)",
            "rows": rows,
        }


def _speedups(rows: list[dict]) -> None:
    """Each measured row's images/s over the baseline's at the same size."""
    base = {r["size"]: r for r in rows if r["backend"] == BASELINE and r["status"] == "ok"}
    for r in rows:
        b = base.get(r["size"])
        if r["status"] == "ok" and b is not None:
            r["speedup"] = round(r["images_per_s"] / b["images_per_s"], 2)
            r["infer_speedup"] = round(r["infer_images_per_s"] / b["infer_images_per_s"], 2)


def run_bench(config: BenchConfig, progress: Callable[[str], None] = log.info) -> dict:
    """Run the benchmark matrix of `config`; the JSON-ready result (see Bench.run)."""
    return Bench(config, progress).run()
