"""Generated gRPC stubs for protos/ (`make protos`); do not edit by hand."""
