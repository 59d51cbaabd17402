"""A readable description of a model package: what `p2phd info MODEL_DIR` prints.

Reads only the manifest, the file system (the package and this machine's engine cache) and the
engines' quality report (no ONNX or torch, no engine's bytes), so it is instant even for a 700 MB
generator.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from p2phd.engine.backends.base import int8_how
from p2phd.engine.core import compiled_cache, quality
from p2phd.engine.core.package import ENGINES, ModelPackage


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return [fmt(header).rstrip(), *(fmt(r).rstrip() for r in rows)]


def _architecture(arch: dict) -> str:
    """The architecture in words, for our two families by name (without importing their code,
    which needs torch); any other family's fields as they are."""
    family = arch.get("family", "pix2pixhd")
    if family not in ("pix2pix", "pix2pixhd"):
        fields = ", ".join(f"{k} {v}" for k, v in arch.items() if k != "family")
        return f"{family} generator: {fields}"
    if family == "pix2pix":
        norm = arch.get("norm")
        if norm == "batch":
            how = (
                "per-image statistics" if arch.get("bn_mode") == "image-stats" else "running stats"
            )
            norm = f"batch ({how})"
        return f"pix2pix {arch.get('netG')} generator: ngf {arch.get('ngf')}, norm {norm}"
    text = (
        f"pix2pixHD {arch.get('netG', '?')} generator: ngf {arch.get('ngf')}, "
        f"{arch.get('n_downsample_global')} downsamplings, {arch.get('n_blocks_global')} "
        "residual blocks"
    )
    if arch.get("netG") == "local":
        text += (
            f", {arch.get('n_local_enhancers')} local enhancer(s) with "
            f"{arch.get('n_blocks_local')} blocks"
        )
    return text


def _cached_engines(package_key: str) -> list[str]:
    """The engines this machine's engine cache holds for the package, as a table."""
    files = compiled_cache.package_files(package_key)
    lines = [f"Engines in this machine's cache ({compiled_cache.cache_root() / package_key}/)"]
    if not files:
        return [*lines, "  none (built on first use, or by p2phd build MODEL_DIR --backend ...)"]
    rows = []
    for f in files:
        backend, _, key = f.backend_key.partition("-")
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.last_used))
        rows.append((backend, key, f.name, human_size(f.size), used))
    total = human_size(sum(f.size for f in files))
    return [
        *lines,
        *_table(("backend", "key", "file", "size", "last used"), rows),
        f"  {len(files)} file(s), {total}; the least recently used go first when the cache "
        f"exceeds ${compiled_cache.MAX_MB_ENV}",
    ]


_RECORD_FIELDS = ("kept_in_float", "calibration_maps", "source", "size", "held_out_maps")


def _int8_line(record: dict | None, path) -> str:
    """What the int8 graph was calibrated on, or how to make one."""
    if record is None:
        return f"not calibrated: {int8_how(path)}"
    missing = [f for f in _RECORD_FIELDS if f not in record]
    if missing:
        return f"generator.int8.onnx: its calibration record lacks {', '.join(missing)}"
    ops = Counter(k.get("op", "?") for k in record["kept_in_float"])
    kept = ", ".join(f"{n} {op}" for op, n in sorted(ops.items())) or "none"
    return (
        f"generator.int8.onnx: calibrated on {len(record['calibration_maps'])} maps of "
        f"{record['source']} at {record['size']}, {len(record['held_out_maps'])} held out for "
        f"the gate; kept in float: {kept}"
    )


def describe_package(model_dir: str | Path) -> str:
    """The package's contents, engines and engine quality as aligned text tables."""
    package = ModelPackage(model_dir)  # verifies every file's sha256
    m = package.manifest
    classes = {c.id: c.name for c in m.semantic_classes()}
    lines = [
        f"Model package {package.path}",
        f"  format {m.format_version}, exported by {m.exporter_version or 'unknown'}",
        "",
        f"  architecture  {_architecture(m.architecture)}",
        f"  input         NCHW float32, {m.input_channels} channels = {' + '.join(m.input_order)}",
        f"  size          height and width multiples of {m.size_multiple}",
    ]
    if m.image_input:
        lines.insert(4, f"  images        {m.input_nc}-channel input images, scaled to [-1, 1]")
    else:
        lines.insert(4, f"  labels        label_nc {m.label_nc} ({len(m.classes)} named classes)")
        lines.append(
            f"  instances     {'edges from the instance map' if m.instance else 'not used'}"
        )
    if m.encoder:
        lines.append(
            f"  encoder       encoder.onnx: photo -> {m.feat_num} feature channels "
            f"(nef {m.architecture.get('nef')}), pooled per instance by the engine"
        )
    else:
        lines.append("  encoder       none")
    clusters = dict(sorted(package.feature_clusters().items()))
    if clusters:
        named = ", ".join(f"{c} {classes.get(c, '?')} ({len(v)})" for c, v in clusters.items())
        lines.append(f"  features      k-means centres for {len(clusters)} classes: {named}")
    else:
        lines.append("  features      no clusters")
    if m.variants:
        lines.append(f"  variants      {', '.join(f'{k}: {v}' for k, v in m.variants.items())}")
    errors = {k: v for k, v in m.parity.items() if k != "fp16_psnr_db"}
    if errors:
        errs = ", ".join(f"{k} {v:.2g}" for k, v in errors.items())
        lines.append(f"  parity        {errs} (max|onnx-torch|/max|torch|, ONNX Runtime CPU)")
    if "fp16_psnr_db" in m.parity:
        psnr = m.parity["fp16_psnr_db"]
        lines.append(f"  fp16 in fp16  {psnr:.1f} dB PSNR vs fp32 (onnx.reference, all fp16)")
    if not m.image_input:
        lines.append(f"  int8          {_int8_line(m.calibration.get('int8'), package.path)}")

    lines += ["", "Files"]
    rows = [
        (name, human_size((package.path / name).stat().st_size), digest[:12])
        for name, digest in sorted(m.files.items())
    ]
    lines += _table(("file", "size", "sha256"), rows)

    lines += ["", *_cached_engines(compiled_cache.package_key(package.content_key))]
    engines = package.path / ENGINES
    report = quality.read_report(engines) if engines.is_dir() else {}
    if report:
        lines += ["", f"Engine quality ({ENGINES}/{quality.QUALITY_FILE}, vs fp32 PyTorch)"]
        rows = []
        for key, entry in sorted(report.items()):
            psnr = "identical" if entry.get("identical_uint8") else f"{entry.get('psnr_db')}"
            err = entry.get("max_abs_err")
            ok, why = quality.allows(report, key, package.content_key)
            default = "yes (fp32)" if key.endswith(":fp32") else "yes" if ok else f"no: {why}"
            if key.endswith(":int8"):  # a gate, never a default
                ok, why = quality.allows_int8(report, key, package.content_key, str(package.path))
                default = f"no, only when asked ({'gate passed' if ok else why})"
            rows.append((key, psnr, "-" if err is None else f"{err:.3g}", default))
        lines += _table(("engine", "PSNR dB", "max abs err", "chosen by default"), rows)
    return "\n".join(lines)
