"""Test doubles of the TensorRT 10 and cuda-python runtime Python APIs, for CI without a GPU.

Only the subset p2phd calls, with the documented names, signatures and return conventions
(cuda-python returns `(err, *values)` tuples; TensorRT returns bools, None or objects), backed by
numpy: device pointers are integers in a fake address space mapped to numpy buffers, pinned host
buffers are real host memory, and an engine runs its ONNX graph with ONNX Runtime on the CPU.
They test our control flow (build, caches, buffers, buckets, CUDA-graph capture and replay, the
layer profiler, `render_maps` with the CUDA kernels' API routed to the CPU kernels, the bench's
TensorRT rows), never speed: nothing here is a GPU number. Tests opt in through the `trt_double`
fixture (tests/doubles/fixtures.py); nothing else installs them.
"""
