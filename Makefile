# p2phd: every target sets itself up (a .venv with Python 3.11 and the extras it needs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
NATIVE := CMakeLists.txt pyproject.toml $(wildcard engine/kernels/csrc/*)
NVCC   := $(shell command -v nvcc)

.PHONY: demo test lint protos bench native-check cuda-check gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"

# One stamp per set of extras; the native kernels rebuild when their sources change.
$(VENV)/.installed-%: $(NATIVE) | $(BIN)/python
	$(BIN)/pip install -q --no-build-isolation -e ".[$(subst +,$(comma),$*)]"
	touch $@

comma := ,
RUNTIME := $(VENV)/.installed-train
DEVENV  := $(VENV)/.installed-train+dev+bench+ray

demo: $(RUNTIME)
	$(BIN)/p2phd demo

# The tritonserver (2.51, Python backend) the nvidia-pytriton wheel bundles, for `p2phd triton`
# and tests/triton. --no-deps: its Python library (never imported) pins numpy<2; p2phd runs only
# the server, whose Python backend embeds this venv's Python through its shared libpython.
TRITON := $(VENV)/.installed-tritonserver
$(TRITON): | $(BIN)/python
	$(BIN)/pip install -q --no-deps "nvidia-pytriton==0.7.0"
	touch $@

test: $(DEVENV) $(TRITON)
	@$(MAKE) --no-print-directory native-check
	$(BIN)/python -m pytest -q

lint: $(DEVENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: $(DEVENV)
	$(BIN)/p2phd bench models/default

# The native kernels with warnings as errors (pip install never uses -Werror, so a new compiler's
# new warning cannot break installing): the CPU library, then cuda-check when nvcc is found.
native-check:
	cmake -S . -B build/native-check -G Ninja -DCMAKE_BUILD_TYPE=Release -DP2PHD_WERROR=ON \
		-DP2PHD_CUDA=OFF > /dev/null
	cmake --build build/native-check --target p2phd_kernels_cpu
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory cuda-check; fi

# The CUDA kernels compiled by nvcc alone (no launchers: cuda.py launches them), warnings as errors
# in nvcc, the host compiler and ptxas, with ptxas' register/spill report. Nothing here is
# installed: at run time NVRTC compiles the same file for the GPU it finds.
cuda-check:
	cmake -S . -B build/cuda-check -G Ninja -DCMAKE_BUILD_TYPE=Release -DP2PHD_WERROR=ON > /dev/null
	cmake --build build/cuda-check --target p2phd_kernels_cuda --clean-first -- -v \
		> build/cuda-check/nvcc.log 2>&1 || { cat build/cuda-check/nvcc.log; exit 1; }
	@grep -E "ptxas info|bytes stack" build/cuda-check/nvcc.log
	@echo "cuda-check: CUDA kernels compiled with warnings as errors"

# On a machine with an NVIDIA GPU (driver R535+), one command: the CUDA 12 GPU stack (the `gpu`
# extra and ONNX Runtime's CUDA build), then every check, each report into $(GPU_RESULTS):
# `p2phd doctor` (doctor.txt), the gpu tests (tests.txt), the CUDA kernels against the CPU kernels
# on real frames, timed (cuda-kernels.json), and TensorRT FP16 on the full-size 512p generator at
# 1024x512 (batches 1-16, latency percentiles, images/s, per-layer profile; bench-512p-tensorrt/).
# Every check runs even when one fails; the exit status is 1 if any failed, naming them.
# Offline, where a Python already holds a CUDA stack (the lent H100/H200 machines: torch cu130,
# cuda-bindings 13, NVRTC 13, no TensorRT), `make gpu-check GPU_PYTHON=python3` installs p2phd
# into that Python (--no-deps) and runs the same checks there instead of building .venv.
GPU_FULL    ?= /tmp/p2phd-512p-fp16
GPU_RESULTS ?= benchmarks/results/gpu-check
SAMPLES     ?= ../shared/data/cityscapes-sample
GPU_ENV     := $(VENV)/.installed-train+dev+bench+gpu
ORT_GPU     := $(VENV)/.installed-onnxruntime-gpu
# PyPI's torch 2.13.0 is a CUDA 13 build: it requires cuda-bindings 13, which the CUDA 12 stack
# rules out, so pip cannot install both. The GPU environment replaces it (`make test` installs
# it) with torch's CUDA 12.8 build from PyTorch's own index; where that index lacks it, set
# TORCH_INDEX to .../whl/cu126, or to .../whl/cpu (then only training on the GPU fails).
TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
ifdef GPU_PYTHON
GPU_PY    := $(GPU_PYTHON)
GPU_STACK := gpu-python
else
GPU_PY    := $(BIN)/python
GPU_STACK := $(GPU_ENV) $(ORT_GPU)
endif

gpu-check: $(GPU_STACK)
	@mkdir -p $(GPU_RESULTS); failed=; \
	$(GPU_PY) -m p2phd.engine.apps.cli doctor --require-gpu > $(GPU_RESULTS)/doctor.txt 2>&1 \
		|| failed="$$failed doctor"; cat $(GPU_RESULTS)/doctor.txt; \
	P2PHD_CITYSCAPES_SAMPLE=$(SAMPLES) $(GPU_PY) -m pytest -m gpu -v -rfE -p no:cacheprovider \
		> $(GPU_RESULTS)/tests.txt 2>&1 \
		|| failed="$$failed tests"; tail -n 3 $(GPU_RESULTS)/tests.txt; \
	$(GPU_PY) benchmarks/cuda_kernels.py --samples $(SAMPLES) \
		-o $(GPU_RESULTS)/cuda-kernels.json > /dev/null || failed="$$failed cuda-kernels"; \
	if $(GPU_PY) -c "import tensorrt" 2> /dev/null; then \
		{ [ -f $(GPU_FULL)/generator.fp16.onnx ] || $(GPU_PY) benchmarks/make_package.py \
			-o $(GPU_FULL) --ngf 64 --n-downsample 4 --n-blocks 9 --label-nc 35 --fp16; } && \
		$(GPU_PY) -m p2phd.engine.apps.cli bench $(GPU_FULL) --backends tensorrt \
			--precision fp16 --batch 1,2,4,8,16 --size 512x1024 --no-baseline \
			-o $(GPU_RESULTS)/bench-512p-tensorrt || failed="$$failed tensorrt-bench"; \
	else echo "TensorRT bench: not run, TensorRT is not installed"; failed="$$failed tensorrt-bench"; fi; \
	echo "reports in $(GPU_RESULTS)/"; \
	if [ -n "$$failed" ]; then echo "gpu-check failed:$$failed"; exit 1; fi

.PHONY: gpu-python
gpu-python:
	$(GPU_PYTHON) -m pip install -q --no-build-isolation --no-deps -e .

# Redone after any other install of the extras (`make test`'s brings PyPI's torch and the CPU
# onnxruntime back), and so is $(ORT_GPU) after it.
EXTRAS_INSTALLS = $(filter-out $(GPU_ENV) $(ORT_GPU) $(TRITON),$(wildcard $(VENV)/.installed-*))
$(GPU_ENV): $(NATIVE) $(EXTRAS_INSTALLS) | $(BIN)/python
	$(BIN)/pip uninstall -q -y torch cuda-python cuda-bindings
	$(BIN)/pip install -q "torch==2.13.0" --index-url $(TORCH_INDEX)
	$(BIN)/pip install -q --no-build-isolation -e ".[train,dev,bench,gpu]"
	touch $@

# ONNX Runtime's CUDA 12 build in place of the CPU one: both install into one directory, so the
# CPU build goes first (installing both leaves whichever came last; `p2phd doctor` flags it).
# Redone whenever an install of the extras has brought the CPU build back.
$(ORT_GPU): $(GPU_ENV)
	$(BIN)/pip uninstall -q -y onnxruntime onnxruntime-gpu
	$(BIN)/pip install -q "$$($(BIN)/python -c \
		'from p2phd.engine.backends.onnxruntime import CUDA_BUILD; print(CUDA_BUILD)')"
	touch $@

# Regenerate the committed gRPC stubs in $(WIRE) from protos/ (flat modules imported as
# p2phd.engine.serving.wire.<name>_pb2; tests/server/test_protos_fresh.py fails when they are stale).
WIRE        ?= engine/serving/wire
PROTO_FILES := $(sort $(shell find protos -name '*.proto'))

protos: | $(BIN)/python
	@$(BIN)/python -c "import grpc_tools" 2>/dev/null || $(BIN)/pip install -q "grpcio-tools>=1.85"
	rm -rf $(WIRE)/.gen && mkdir -p $(WIRE)/.gen
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(WIRE)/.gen --pyi_out=$(WIRE)/.gen \
		--grpc_python_out=$(WIRE)/.gen $(PROTO_FILES)
	find $(WIRE)/.gen -name '*_pb2*' -exec mv {} $(WIRE)/ \;
	sed -i -E 's/^from (p2phd\.v1|inference) import/from p2phd.engine.serving.wire import/' \
		$(WIRE)/*_pb2*.py $(WIRE)/*_pb2.pyi
	rm -rf $(WIRE)/.gen

clean:
	rm -rf build $(VENV)
