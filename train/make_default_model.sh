#!/usr/bin/env bash
# Make the default model package under models/default/ from scratch: synthetic data, training,
# feature clustering, export, example inputs. The checkpoints stay in runs/default/ (the
# package's ONNX initializers carry the same weights under the state_dict names), keeping models/
# small; the 16 kept checkpoints (~0.8 GB) feed benchmarks/default_model_curve.py. About 30 minutes
# on one core (28 minutes end to end on 2026-11-26, 8000 iterations at 4.9 it/s, a 2-core AMD EPYC
# Zen 4 whose other core was busy; 3.5 it/s with other jobs on both cores; one thread is faster
# than two when other jobs share the cores):
#   OMP_NUM_THREADS=1 train/make_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
P2PHD=${P2PHD:-.venv/bin/p2phd}
RUN=runs/default
OUT=models/default

# Rerunning after an interruption remakes the same data and continues the training from its
# last atomic checkpoint.
"$P2PHD" synth -o "$RUN/data" -n 1000 --size 128x256 --seed 0
resume=$([ -f "$RUN/latest.pt" ] && echo --resume || true)
"$P2PHD" train --config configs/default.yaml $resume --weights-only "$RUN/default.pt"
"$P2PHD" cluster --checkpoint "$RUN/default.pt" --data "$RUN/data" -k 10 -o "$RUN/features.npz" \
  --min-area 0.002  # 128x256 scenes: keep people and far cars (the original 1/64 drops them)
# Buildings, people and cars are instances in the synthetic scenes (train/synth.py THING_CLASSES).
"$P2PHD" export --checkpoint "$RUN/default.pt" --features "$RUN/features.npz" -o "$OUT" \
  --thing-classes 11,24,26

# Held-out example inputs for the demo (a seed the training data never used).
"$P2PHD" synth -o "$RUN/examples" -n 4 --size 128x256 --seed 1000 --phase example
mkdir -p "$OUT/examples"
for f in "$RUN"/examples/example_label/*.png; do
  cp "$f" "$OUT/examples/$(basename "$f" .png)_labelIds.png"
done
for f in "$RUN"/examples/example_inst/*.png; do
  cp "$f" "$OUT/examples/$(basename "$f" .png)_instanceIds.png"
done
cp configs/default.yaml "$OUT/train_config.yaml"
cp "$RUN/loss_log.csv" "$OUT/loss_log.csv"
last=$(ls "$RUN"/samples/*.png | tail -n 1)
cp "$last" "$OUT/sample_final.png"
echo "default model written to $OUT"
