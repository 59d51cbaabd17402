"""The benchmark's outputs: bench.json (everything), bench.md (the tables) and two PNG plots
(latency vs batch per backend; throughput vs size), all written atomically into one folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

from p2phd.common.atomic import atomic_write_bytes

JSON_FILE = "bench.json"
MARKDOWN_FILE = "bench.md"
LATENCY_PLOT = "latency_vs_batch.png"
THROUGHPUT_PLOT = "throughput_vs_size.png"

COLUMNS = (
    "backend",
    "precision",
    "batch",
    "size",
    "median ms",
    "p90 ms",
    "p99 ms",
    "images/s",
    "speed-up",
    "infer ms",
    "GMAC/s",
    "% of peak",
    "peak RSS MiB",
    "PSNR dB",
    "max abs err",
    "worst px (levels)",
)
STAGE_COLUMNS = (
    "backend",
    "precision",
    "batch",
    "size",
    "decode",
    "preprocess",
    "infer",
    "postprocess",
    "encode",
)


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


def _label(row: dict) -> str:
    return f"{row['backend']} {row['precision']}"


def _quality_cells(row: dict) -> tuple[str, str, str]:
    """PSNR, max abs error (float output) and the worst pixel's error in uint8 levels."""
    q = row.get("quality")
    if not q or "skipped" in q:
        return "–", "–", "–"
    psnr = "identical" if q.get("identical_uint8") else _fmt(q.get("psnr_db"))
    return psnr, f"{q['max_abs_err']:.2g}", _fmt(q.get("worst_levels"))


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(result: dict) -> str:
    """The headline table, per-stage times, skipped combinations and the machine, as Markdown."""
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    machine = result["machine"]
    model = result["model"]
    arch = model["architecture"]
    out = [
        f"# p2phd bench: {Path(model['dir']).name}",
        "",
        f"{result['started_at']} on {machine['cpu_model']} ({machine['physical_cores']} cores, "
        f"{machine['clock_ghz']} GHz, {machine['memory_gib']} GiB"
        + (f"; GPU {machine['gpu']['name']}" if machine.get("gpu") else "")
        + "). Model: "
        + f"{arch.get('netG', '?')} ngf {arch.get('ngf', '?')}, "
        f"{arch.get('n_downsample_global', '?')} downsamples, {arch.get('n_blocks_global', '?')} "
        f"blocks, {model['input_channels']} input channels; GMAC/image "
        + ", ".join(f"{k}: {v}" for k, v in model["gmacs_per_image"].items())
        + ".",
        "",
        f"Latency: {result['latency_definition']}; median/p90/p99 over "
        f"{result['config']['iters']} timed runs after {result['config']['warmup']} warm-up. "
        "Speed-up is images/s over the baseline (original pix2pixHD path: PyTorch eager fp32, "
        "batch 1) at the same size. % of peak: the generator's MACs over the median infer time, "
        "against the peak for the row's precision (see the JSON's machine.peak), without those "
        "of a first convolution the backend computes from the labels as table lookups (the "
        "JSON's table_lookup_gmacs; GMAC/s counts them). "
        "Quality: vs the fp32 PyTorch output on the same input; worst px: the largest "
        "error of any pixel channel of the uint8 image, in levels of 255.",
        "",
    ]
    if result.get("provisional"):
        out += [f"**Provisional:** {result['provisional']}", ""]
    table = []
    for r in rows:
        lat = r["latency_ms"]
        psnr, err, worst = _quality_cells(r)
        table.append(
            (
                r["backend"],
                r["precision"],
                str(r["batch"]),
                r["size"],
                _fmt(lat["median"]),
                _fmt(lat["p90"]),
                _fmt(lat["p99"]),
                _fmt(r["images_per_s"], 2),
                _fmt(r.get("speedup"), 2) + ("×" if r.get("speedup") is not None else ""),
                _fmt(r["infer_ms"]["median"]),
                _fmt(r["achieved_gmacs_per_s"]),
                _fmt(r["efficiency_pct"]) + f" ({r['peak_precision']})",
                _fmt(r["peak_rss_mib"], 0),
                psnr,
                err,
                worst,
            )
        )
    out += _table(COLUMNS, table)
    out += ["", "Median stage times (ms):", ""]
    out += _table(
        STAGE_COLUMNS,
        [
            (r["backend"], r["precision"], str(r["batch"]), r["size"])
            + tuple(_fmt(r["stages_ms"][s], 2) for s in STAGE_COLUMNS[4:])
            for r in rows
        ],
    )
    others = [r for r in result["rows"] if r["status"] != "ok"]
    if others:
        out += ["", "Not measured:", ""]
        seen = set()
        for r in others:
            key = (_label(r), r["status"], r["reason"])
            if key not in seen:
                seen.add(key)
                out.append(f"- {_label(r)}: {r['status']}: {r['reason']}")
    peak = machine["peak"]
    out += ["", "CPU peak (cores × clock × FMA lanes per cycle):", ""]
    for prec, p in peak.items():
        out.append(f"- {prec}: {p['gmacs_per_s']} GMAC/s = " + " × ".join(p["assumptions"]))
    out += [
        "",
        f"Peak memory: {result['memory_method']}. Other processes' share of the CPUs during "
        f"the run: {_share(result.get('other_load', {}).get('other_cpu_share'))}; load average "
        f"before: {', '.join(f'{x:.2f}' for x in result['load_average']['before'])}.",
        "",
    ]
    return "\n".join(out)


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plots(result: dict, out_dir: Path) -> list[Path]:
    """Latency vs batch (one line per backend and precision, one panel per size) and best
    throughput vs size; PNGs with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [r for r in result["rows"] if r["status"] == "ok"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    labels = list(dict.fromkeys(_label(r) for r in rows))
    written = []

    fig, axes = plt.subplots(
        1, max(1, len(sizes)), figsize=(5.5 * max(1, len(sizes)), 4), squeeze=False
    )
    for ax, size in zip(axes[0], sizes, strict=False):
        for label in labels:
            pts = sorted(
                (r["batch"], r["latency_ms"]["median"])
                for r in rows
                if _label(r) == label and r["size"] == size
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, "o-" if len(pts) > 1 else "s", label=label)
        ax.set(title=f"latency per batch, {size}", xlabel="batch", ylabel="median latency (ms)")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path = out_dir / LATENCY_PLOT
    _save(fig, path)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))

    def pixels(size: str) -> int:
        h, w = size.split("x")
        return int(h) * int(w)

    for label in labels:
        best = {}
        for r in rows:
            if _label(r) == label:
                best[r["size"]] = max(best.get(r["size"], 0), r["images_per_s"])
        pts = sorted((pixels(s), v, s) for s, v in best.items())
        ax.plot([p[0] / 1e6 for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set(
        title="throughput (best batch) vs size", xlabel="megapixels per image", ylabel="images/s"
    )
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out_dir / THROUGHPUT_PLOT
    _save(fig, path)
    plt.close(fig)
    written.append(path)
    return written


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """bench.json, bench.md and the plots into `out_dir`; the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_FILE
    atomic_write_bytes(json_path, json.dumps(result, indent=2).encode() + b"\n")
    md_path = out_dir / MARKDOWN_FILE
    atomic_write_bytes(md_path, markdown(result).encode())
    return [json_path, md_path, *plots(result, out_dir)]
