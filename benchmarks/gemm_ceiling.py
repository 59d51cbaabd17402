"""The bf16 matrix-multiply rate this CPU actually reaches, as context for `p2phd bench`'s "% of
peak": the peak is arithmetic (cores x clock x AMX FMA/cycle); this is what oneDNN, the library
under both PyTorch and OpenVINO, gets out of it on plain GEMMs.

Shapes: two square GEMMs and the residual block's 3x3 convolution of the full-size 512p generator
as a GEMM (im2col: rows = pixels at the 16x32 bottleneck of a 256x512 image x batch, K = 1024 x 9,
N = 1024), which holds ~70% of the generator's MACs. Writes benchmarks/results/gemm_ceiling.json.

    .venv/bin/python benchmarks/gemm_ceiling.py
"""

from __future__ import annotations

import argparse
import sys
import time

from _shared import RESULTS, write_result

SHAPES = {
    "square 2048": (2048, 2048, 2048),
    "square 4096": (4096, 4096, 4096),
    "512p residual conv, batch 1": (512, 9216, 1024),
    "512p residual conv, batch 4": (2048, 9216, 1024),
}


def gmacs(m: int, k: int, n: int, repeats: int) -> float:
    """Best-of-`repeats` GMAC/s of a bf16 [m,k] x [k,n] product on all cores."""
    import torch

    a = torch.randn(m, k, dtype=torch.bfloat16)
    b = torch.randn(k, n, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return m * k * n / best / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("-o", "--output", default=str(RESULTS / "gemm_ceiling.json"))
    args = p.parse_args(argv)

    import torch

    from p2phd.engine.apps.bench.machine import cpu_peak, describe_machine

    peak = cpu_peak("bf16")
    rows = {}
    for name, (m, k, n) in SHAPES.items():
        rate = gmacs(m, k, n, args.repeats)
        rows[name] = {
            "m_k_n": [m, k, n],
            "gmacs_per_s": round(rate, 1),
            "percent_of_peak": round(100 * rate * 1e9 / peak.macs_per_s, 1),
        }
        print(f"{name:32s} {rate:8.1f} GMAC/s  {rows[name]['percent_of_peak']:5.1f}% of peak")
    result = {
        "command": "benchmarks/gemm_ceiling.py",
        "what": "bf16 GEMM GMAC/s with PyTorch (oneDNN) on all cores, best of repeats",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "peak": peak.to_json(),
        "machine": describe_machine(),
        "gemms": rows,
    }
    write_result(args.output, result)
    why = "; ".join(peak.assumptions)
    print(f"peak {peak.macs_per_s / 1e9:.0f} GMAC/s ({why}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
