#!/usr/bin/env bash
# issue 20 on a lent GPU machine, one-off (run from the repository root): (1) ../int8-trained512's
# briefly trained 512p generator again, now through the sensitivity search and OpenVINO's int8
# gate; (2) on two of the host CPU's cores (like the 2-core Sapphire Rapids machine CI runs on),
# int8 and bf16 through `p2phd render`'s pipeline and `p2phd bench` against PyTorch eager fp32.
# OpenVINO's wheel came over in two halves: /tmp/ov/ovpart.aa (an earlier call), .whl2b/ovpart.ab.
set -u
export PYTHONUNBUFFERED=1 P2PHD_CACHE=/tmp/p2phd-cache
O=${OUT:-/tmp/out}; PKG=/tmp/t512/pkg; R=$O/r; HERE=benchmarks/results/int8-trained512-amx
mkdir -p $R/t512
cat /tmp/ov/ovpart.aa .whl2b/ovpart.ab > /tmp/ov/openvino-2026.4.1-22982-cp312-cp312-manylinux_2_28_x86_64.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl2b/*.whl /tmp/ov/openvino-*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-build-isolation --no-deps -e . > /dev/null 2>&1 || exit 2
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|Flags" | cut -c1-160; nproc; } > $R/cpu.txt
LOCAL=1 BACKEND=openvino OUT=$R/t512 bash benchmarks/results/int8-trained512/t512.sh
grep -h "int8: \|search" $R/t512/build.txt | cut -c1-300
CPUS=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
echo "two cores: CPUs $CPUS" | tee $R/pinned.txt
export OMP_NUM_THREADS=2
s=$SECONDS; taskset -c $CPUS python3 -m p2phd.engine.apps.cli bench $PKG --backends openvino --precision bf16,int8 --batch 4 --size 256x512 --warmup 1 --iters 3 -o $R/bench2 > $R/bench2.txt 2>&1
echo "bench rc=$? $((SECONDS-s)) s"; grep -E "^\| (baseline|openvino)" $R/bench2/bench.md | cut -d'|' -f2-11
s=$SECONDS; taskset -c $CPUS python3 $HERE/render_speed.py $PKG .devcarry/maps512 > $R/render2.json 2> $R/render2.err
echo "render rc=$? $((SECONDS-s)) s"; python3 -c "import json; d=json.load(open('$R/render2.json')); print(d['ms_per_image'], d['int8_vs_bf16'], d['cpus'], d['torch_threads'])"
tar -czf $O/results.tar.gz -C $R .
