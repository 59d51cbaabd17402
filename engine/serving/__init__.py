"""Serving: the gRPC server (p2phd.v1, KServe v2), batcher, services, metrics, client; Triton."""
