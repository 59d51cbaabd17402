#!/usr/bin/env bash
# issue 20 on a lent GPU machine: train the 512p generator briefly (synthetic scenes, 256x512),
# export it, and run the int8 gate on it through ONNX Runtime (the CPU has AMX/VNNI). The machine
# is offline: .whl/ and .whl3/ hold the wheels it lacks (grpcio, protobuf, flask...; nncf, pydot,
# openvino-telemetry).
set -u
export PYTHONUNBUFFERED=1 P2PHD_CACHE=/tmp/p2phd-cache
P2=${P2:-"python3 -m p2phd.engine.apps.cli"}; O=${OUT:-/tmp/t512out}; ITERS=${ITERS:-1200}; N=${N:-64}
if [ -z "${LOCAL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl3/*.whl || exit 1
  export PYTHONPATH=/tmp/site
  python3 -m pip install -q --no-build-isolation --no-deps -e . > /dev/null 2>&1 || exit 2
fi
s=$SECONDS; $P2 synth -o /tmp/t512/data -n $N --size 256x512 --seed 0 > $O/synth.txt 2>&1 || { tail $O/synth.txt; exit 3; }; echo "synth $((SECONDS-s)) s"; s=$SECONDS
timeout ${TRAIN_S:-80} $P2 train --config benchmarks/results/int8-trained512/t512.yaml --set max_iters=$ITERS ${TRAIN_EXTRA:-} > $O/train.txt 2>&1; echo "train rc=$? $((SECONDS-s)) s"; tail -c 400 $O/train.txt | tr '\r' '\n' | tail -2; s=$SECONDS
$P2 export --checkpoint /tmp/t512/run/latest.pt -o /tmp/t512/pkg --no-fp16 > $O/export.txt 2>&1; echo "export rc=$? $((SECONDS-s)) s"; s=$SECONDS
$P2 build /tmp/t512/pkg --backend ${BACKEND:-onnxruntime} --precision int8 --calibration synthetic --size 256x512 > $O/build.txt 2>&1; echo "build rc=$? $((SECONDS-s)) s"; grep -E "gate|PSNR" $O/build.txt
cp /tmp/t512/pkg/engines/quality.json $O/ 2>/dev/null; python3 -c "import json; print(json.dumps(json.load(open('/tmp/t512/pkg/manifest.json'))['calibration'], indent=1))" > $O/calibration.json 2>/dev/null
tail -3 /tmp/t512/run/loss_log.csv > $O/loss_tail.csv 2>/dev/null
