"""`p2phd bench`: latency, throughput, memory, efficiency against the machine's peak, and quality
of every backend and precision against the original pix2pixHD path, with JSON, Markdown and plots.

Modules: harness (the matrix and stage timing), baseline (the original path), macs (MACs from the
ONNX graph), machine (description and peak rate), gpu (CUDA events, NVTX, TensorRT layer times),
report (the output files).
"""
