#!/usr/bin/env bash
# int8 against bf16 and PyTorch eager fp32 on the lent machine's AMX CPU (issue 20's AMX target):
# the 512p generator (random weights) at 256x512, batch 4, through p2phd bench.
set -u
export PYTHONUNBUFFERED=1 P2PHD_CACHE=/tmp/p2phd-cache
PY=${PY:-python3}; P2=${P2:-"python3 -m p2phd.engine.apps.cli"}
NET=${NET:-"--ngf 64 --n-downsample 4 --n-blocks 9"}; PKG=${PKG:-/tmp/p512}; O=${OUT:-/tmp/amxout}
if [ -z "${LOCAL:-}" ]; then
  cat /tmp/ov/ovpart.aa .whl2b/ovpart.ab > /tmp/ov/openvino-2026.4.1-22982-cp312-cp312-manylinux_2_28_x86_64.whl || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl2b/*.whl /tmp/ov/openvino-*.whl || exit 1
  export PYTHONPATH=/tmp/site
  python3 -m pip install -q --no-build-isolation --no-deps -e . > /dev/null 2>&1 || exit 2
fi
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|Flags" | cut -c1-120; nproc; } > $O/cpu.txt
s=$SECONDS; $PY benchmarks/make_package.py -o $PKG $NET --label-nc 35 > $O/make.txt 2>&1 || { tail -20 $O/make.txt; exit 3; }
echo "package $((SECONDS-s)) s"; s=$SECONDS
$P2 build $PKG --backend openvino --precision int8 --calibration .devcarry/cs8 --size 256x512 > $O/build.txt 2>&1; echo "build rc=$? $((SECONDS-s)) s"; tail -4 $O/build.txt; s=$SECONDS
$P2 bench $PKG --backends openvino --precision bf16,int8 --batch 1,4 --size 256x512 --warmup 2 --iters 5 -o $O/bench-amx > $O/bench.txt 2>&1; echo "bench rc=$? $((SECONDS-s)) s"; tail -25 $O/bench.txt
