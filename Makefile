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
DEVENV  := $(VENV)/.installed-train+dev+bench+ray

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

# Regenerate the committed gRPC stubs in $(WIRE) from protos/ (flat modules imported as
# p2phd.engine.wire.<name>_pb2; tests/server/test_protos_fresh.py fails when they are stale).
WIRE        ?= engine/wire
PROTO_FILES := $(sort $(shell find protos -name '*.proto'))

protos: | $(BIN)/python
	@$(BIN)/python -c "import grpc_tools" 2>/dev/null || $(BIN)/pip install -q "grpcio-tools>=1.85"
	rm -rf $(WIRE)/.gen && mkdir -p $(WIRE)/.gen
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(WIRE)/.gen --pyi_out=$(WIRE)/.gen \
		--grpc_python_out=$(WIRE)/.gen $(PROTO_FILES)
	find $(WIRE)/.gen -name '*_pb2*' -exec mv {} $(WIRE)/ \;
	sed -i -E 's/^from (p2phd\.v1|inference) import/from p2phd.engine.wire import/' \
		$(WIRE)/*_pb2*.py $(WIRE)/*_pb2.pyi
	rm -rf $(WIRE)/.gen

clean:
	rm -rf build $(VENV)
