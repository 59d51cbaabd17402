"""p2phd inside NVIDIA Triton Inference Server: a model repository for Triton's Python backend
(`repository`), the model Triton runs (`model`), and a bundled `tritonserver` launcher
(`launch`). The tensors are those of p2phd's KServe v2 service (`p2phd.engine.serving.kserve`); the
Renderer, styles and size policy are those of `p2phd serve`, and Triton does the batching.
"""
