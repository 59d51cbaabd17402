# p2phd: every target sets itself up (a .venv with Python 3.11 and the extras it needs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
NATIVE := CMakeLists.txt pyproject.toml $(wildcard engine/kernels/csrc/*)
NVCC   := $(shell command -v nvcc)

.PHONY: demo test lint protos bench cuda-check clean

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
DEVENV  := $(VENV)/.installed-train+dev+bench

demo: $(RUNTIME)
	$(BIN)/p2phd demo

test: $(DEVENV)
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory cuda-check; fi
	$(BIN)/python -m pytest -q

lint: $(DEVENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(DEVENV)
	$(BIN)/p2phd bench models/default

# Compile the CUDA kernels with warnings as errors and show ptxas resource usage.
cuda-check:
	cmake -S . -B build/cuda-check -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
	cmake --build build/cuda-check --target p2phd_kernels_cuda --clean-first -- -v \
		> build/cuda-check/nvcc.log 2>&1 || { cat build/cuda-check/nvcc.log; exit 1; }
	@grep -E "ptxas info" build/cuda-check/nvcc.log
	@echo "cuda-check: CUDA kernels compiled with warnings as errors"

clean:
	rm -rf build $(VENV)
