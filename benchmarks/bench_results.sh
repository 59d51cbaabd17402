#!/usr/bin/env bash
# Reproduce the committed benchmark results in benchmarks/results/. Run it on an otherwise idle
# machine (`uptime` load average below 1.5): every number is a wall-clock time on shared cores.
#
#   benchmarks/bench_results.sh [PART ...]     (default: all but soak; `all` includes soak)
#
#   engine    p2phd bench on (a) the default model (models/default) at 128x256 and 256x512 and
#             (b) the full-size 512p generator (ngf 64, 4 downsamples, 9 blocks, label_nc 35 +
#             edges) from random weights, exported once to $FULL (speed only: its images are
#             noise, so the quality claim comes from (a), a trained model); then OpenVINO's
#             settings on (b): hint, streams, requests in flight                  (~5 min)
#   gemm      the bf16 GEMM rate oneDNN reaches here: context for "% of peak"        (~1 min)
#   kernels   the native kernels vs NumPy and the original per-instance loop       (~1 min)
#   render    p2phd render's pipeline vs the engine alone at 256x512: the default model,
#             then the full-size 512p generator in bf16                          (~2 min)
#   firstconv OpenVINO's first convolution from the labels vs in the graph, bf16, the
#             default model and the full-size 512p generator (int8 needs a calibrated
#             package: benchmarks/results/first-conv/README.md)                  (~5 min)
#   load      the gRPC server under 16 clients, batching on and off                (~4 min)
#   editor    p2phd edit's round trip, HTTP and in headless Chromium               (~1 min)
#   overload  4x capacity for 60 s                                                 (~2 min)
#   pix2pix   pix2pix/CycleGAN generators: export, parity, latency per backend     (~1 min)
#   soak      70% load for 10 minutes                                              (~11 min)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
P2PHD=${P2PHD:-.venv/bin/p2phd}
FULL=${FULL:-/tmp/p2phd-512p}
OUT=benchmarks/results

full_package() {  # the full-size 512p generator from random weights, exported once to $FULL
  [ -f "$FULL/manifest.json" ] || "$PY" benchmarks/make_package.py -o "$FULL" --ngf 64 \
    --n-downsample 4 --n-blocks 9 --label-nc 35
}
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(engine gemm kernels render firstconv load editor overload pix2pix)
[ "${PARTS[0]}" = all ] && PARTS=(engine gemm kernels render firstconv load editor overload pix2pix soak)

for part in "${PARTS[@]}"; do
  echo "== $part ($(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg))"
  case $part in
    engine)
      "$P2PHD" bench models/default --backends openvino,onnxruntime --precision fp32,bf16 \
        --batch 1,2,4 --size 128x256,256x512 --warmup 2 --iters 10 -o "$OUT/bench-default"
      full_package
      "$P2PHD" bench "$FULL" --backends onnxruntime,openvino --precision fp32,bf16 \
        --batch 1,2,4 --size 256x512 --warmup 2 --iters 5 -o "$OUT/bench-512p"
      "$PY" benchmarks/openvino_tuning.py "$FULL" --size 256x512 --batch 1,2,4 \
        --precision bf16 --configs 0,3 --seconds 10 -o "$OUT/bench-openvino-tuning" ;;
    gemm) "$PY" benchmarks/gemm_ceiling.py ;;
    kernels) "$PY" benchmarks/kernels.py --frames 3 --repeat 15 ;;
    render)
      "$PY" benchmarks/render_throughput.py --size 256x512 --batch 4 -n 64 --rounds 3
      full_package
      "$PY" benchmarks/render_throughput.py --model "$FULL" --precision bf16 --size 256x512 \
        --batch 4 -n 24 --rounds 2 -o "$OUT/render_throughput-512p.json" ;;
    firstconv)
      full_package
      "$PY" benchmarks/first_conv.py models/default "$FULL" --precision bf16 \
        -o "$OUT/first_conv.json" ;;
    load) "$PY" benchmarks/load.py --model models/default --clients 16 --rounds 5 ;;
    editor) "$PY" benchmarks/editor_latency.py --model models/default --screenshot docs/editor.png ;;
    overload) "$PY" benchmarks/overload.py --model models/default --load 4 --seconds 60 ;;
    pix2pix) "$PY" benchmarks/pix2pix.py ;;
    soak) "$PY" benchmarks/soak.py --model models/default --seconds 600 ;;
    *) echo "unknown part: $part (engine gemm kernels render firstconv load editor overload pix2pix soak all)" >&2
       exit 2 ;;
  esac
done
