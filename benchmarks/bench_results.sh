#!/usr/bin/env bash
# Reproduce the committed benchmark results in benchmarks/results/ (about 10 minutes on 2 cores;
# run it on an otherwise idle machine: `uptime` load average below 1.5).
#   (a) the default model (models/default) at its native 128x256 and at 256x512;
#   (b) the full-size 512p generator (ngf 64, 4 downsamples, 9 blocks, label_nc 35 + edges) from
#       random weights, exported once to $FULL (speed only: its images are noise, so the quality
#       claim comes from (a), a trained model).
#   (c) OpenVINO's settings on (b): hint, streams, requests in flight.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
P2PHD=${P2PHD:-.venv/bin/p2phd}
FULL=${FULL:-/tmp/p2phd-512p}
OUT=benchmarks/results

if [ -d models/default ]; then
  "$P2PHD" bench models/default --backends openvino,onnxruntime --precision fp32,bf16 \
    --batch 1,2,4 --size 128x256,256x512 --warmup 2 --iters 10 -o "$OUT/bench-default"
else
  echo "models/default not found (train/make_default_model.sh makes it); skipping (a)" >&2
fi

[ -f "$FULL/manifest.json" ] || "$PY" benchmarks/make_package.py -o "$FULL" --ngf 64 \
  --n-downsample 4 --n-blocks 9 --label-nc 35
"$P2PHD" bench "$FULL" --backends onnxruntime,openvino --precision fp32,bf16 --batch 1,2,4 \
  --size 256x512 --warmup 1 --iters 3 -o "$OUT/bench-512p"
"$PY" benchmarks/openvino_tuning.py "$FULL" --size 256x512 --batch 1,2,4 --precision bf16 \
  --configs 0,3 --seconds 10 -o "$OUT/bench-openvino-tuning"
