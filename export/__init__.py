"""Turn trained pix2pixHD networks into a model package: ONNX graphs checked for parity against
PyTorch, an fp16 variant, feature clusters and the manifest (`package_writer.export_package`)."""
