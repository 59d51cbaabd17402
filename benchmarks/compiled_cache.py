"""The engine cache under shape churn and large shapes (issue 17 findings 3 and 8, issue 18).

Part churn: N requests, each of a new small shape, rendered by OpenVINO on a package: what the
package and the engine cache gain on disk, and how long a new shape costs when compiled vs when
its engine is imported from the cache (a second renderer, as after a restart).
Part large: a few large shapes rendered in a row, then idle: resident memory after each, with
compiled models bounded by bytes ($P2PHD_ENGINE_MEMORY_MB).

    .venv/bin/python benchmarks/compiled_cache.py [--model models/default] [--churn 30] \
        [--large 4] [-o benchmarks/results/compiled_cache.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _shared import write_result

from p2phd.engine.core import compiled_cache
from p2phd.engine.core.quality import synthetic_maps
from p2phd.engine.core.renderer import Renderer


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def render_ms(renderer: Renderer, h: int, w: int, label_nc: int) -> float:
    labels, instances = synthetic_maps(1, h, w, label_nc, seed=h * 7 + w)
    start = time.perf_counter()
    renderer.render(labels, instances)
    return (time.perf_counter() - start) * 1e3


def churn(model: Path, n: int) -> dict:
    package_before = tree_bytes(model)
    with Renderer(model, "openvino", "fp32") as r:
        label_nc, mult = r.manifest.label_nc, r.manifest.size_multiple
        shapes = [(64, 64 + mult * k) for k in range(n)]
        compiled = [render_ms(r, h, w, label_nc) for h, w in shapes]
    with Renderer(model, "openvino", "fp32") as r:  # a restart: every shape is in the cache
        imported = [render_ms(r, h, w, label_nc) for h, w in shapes]
    return {
        "requests": n,
        "shapes": f"64x{shapes[0][1]}..64x{shapes[-1][1]}",
        "package_bytes_added": tree_bytes(model) - package_before,
        "cache_mb": round(tree_bytes(compiled_cache.cache_root()) / 2**20, 1),
        "cache_limit_mb": compiled_cache.max_bytes() >> 20,
        "new_shape_ms_compiled_median": round(float(np.median(compiled)), 1),
        "new_shape_ms_from_cache_median": round(float(np.median(imported)), 1),
    }


def large(model: Path, n: int) -> dict:
    rss = {"start": round(rss_mib())}
    with Renderer(model, "openvino", "fp32") as r:
        for k in range(n):
            h, w = 1024, 1024 + 16 * k * r.manifest.size_multiple
            render_ms(r, h, w, r.manifest.label_nc)
            rss[f"after {h}x{w}"] = round(rss_mib())
        time.sleep(1)
        rss["idle"] = round(rss_mib())
        held = {
            "compiled_models_held": len(r.backend._compiled),
            "estimated_mb": r.backend.estimated_bytes() >> 20,
        }
    return {"rss_mib": rss, **held, "budget_mb": r.backend.memory_budget >> 20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/default"))
    p.add_argument("--churn", type=int, default=30)
    p.add_argument("--large", type=int, default=4)
    p.add_argument("-o", "--output", default="benchmarks/results/compiled_cache.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2phd-cache-bench-") as cache:
        os.environ[compiled_cache.CACHE_ENV] = cache  # a fresh cache, measured alone
        result = {
            "model": str(args.model),
            "churn": churn(args.model, args.churn),
            "large": large(args.model, args.large),
        }
    write_result(args.output, result, echo=True)


if __name__ == "__main__":
    main()
