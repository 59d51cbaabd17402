#!/usr/bin/env bash
# issue 20 on a lent GPU machine's host CPU (AMX), one-off, from the repository root: where the
# 512p generator's int8 and bf16 time goes on two of its cores, and PyTorch eager fp32 beside them.
# OpenVINO's wheel came over in two halves: /tmp/ov/ovpart.aa (an earlier call), .whl2b/ovpart.ab.
# Elsewhere (zen4/): LOCAL=1 PATH=.venv/bin:$PATH OUT=DIR bash run.sh, which installs nothing.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
O=${OUT:-/tmp/out}; P=/tmp/p512; HERE=benchmarks/results/int8-amx-profile
if [ -z "${LOCAL:-}" ]; then
  cat /tmp/ov/ovpart.aa .whl2b/ovpart.ab > /tmp/ov/openvino-2026.4.1-22982-cp312-cp312-manylinux_2_28_x86_64.whl || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl2b/*.whl /tmp/ov/openvino-*.whl || exit 1
  export PYTHONPATH=/tmp/site
  python3 -m pip install -q --no-build-isolation --no-deps -e . > /dev/null 2>&1 || exit 2
fi
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz|Flags" | cut -c1-200; grep -o -w -E "amx_(tile|bf16|int8)" /proc/cpuinfo | sort | uniq -c; } > $O/cpu.txt
s=$SECONDS; python3 benchmarks/make_package.py -o $P --ngf 64 --n-downsample 4 --n-blocks 9 --label-nc 35 | tail -1; echo "package $((SECONDS-s)) s"
s=$SECONDS; python3 $HERE/quantize.py $P 2>&1 | tail -1; echo "quantize $((SECONDS-s)) s"
CPUS=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
echo "two cores: CPUs $CPUS" | tee -a $O/cpu.txt
for run in "int8 $P/int8.onnx bf16" "bf16 $P/generator.onnx bf16"; do set -- $run
  taskset -c $CPUS timeout 120 python3 $HERE/profile.py openvino $2 $3 4 36 > $O/$1.json 2> $O/$1.err
  python3 -c "import json; d=json.load(open('$O/$1.json')); print('$1', d['threads'], d['ms_per_image'], list(d['by_kernel_ms_per_image'].items())[:4])"
done
taskset -c $CPUS timeout 60 python3 $HERE/profile.py eager 1 > $O/eager.json 2> $O/eager.err; cat $O/eager.json | tr -d '\n '; echo
