"""The CUDA kernels' device API (`p2phd.engine.kernels.cuda`) on the CUDA runtime double.

Each call is enqueued on the double's stream, in order with the copies and the engine, and runs
the CPU kernels (`p2phd.engine.kernels`: the same per-element arithmetic, checked against the
CUDA source by tests/kernels) on the numpy views of the device buffers. It lets the TensorRT
backend's `render_maps` path (uploads, the input assembled in the engine's input buffer, engine,
uint8 conversion on the device, download) run on the doubles: a test of that control flow, not of
the kernels.
"""

from __future__ import annotations

import numpy as np

from p2phd.engine import kernels
from p2phd.engine.core.cuda_runtime import check
from p2phd.engine.kernels.cuda import DeviceArray
from tests.doubles.cudart import CudaRuntimeDouble

KERNEL_MS = 0.05  # modelled device time of one kernel


class KernelsOnDouble:
    def __init__(self, cuda: CudaRuntimeDouble):
        self.cuda = cuda

    def _view(self, a: DeviceArray) -> np.ndarray:
        nbytes = int(np.prod(a.shape)) * a.dtype.itemsize
        return self.cuda.device_bytes(a.ptr, nbytes).view(a.dtype).reshape(a.shape)

    def assemble_input(
        self, labels, ids, table, label_nc, edges, out, *, kmax=0, feat_channels=0, stream=0
    ) -> None:
        def run(_start: float) -> None:
            inst = None
            if ids is not None:  # the kernels read only the ids and Kmax
                b = ids.shape[0]
                pad = np.full((b, kmax), -1, np.int32)
                inst = kernels.CompactInstances(self._view(ids), np.zeros(b, np.int32), pad, pad)
            features = None if table is None else self._view(table)
            kernels.assemble_input(
                self._view(labels),
                inst,
                label_nc,
                edges,
                features,
                out=self._view(out),
                feat_channels=feat_channels,
            )

        check(self.cuda._enqueue(stream, "assemble_input", KERNEL_MS, run))

    def to_uint8_rgb(self, output, rgb, stream=0) -> None:
        def run(_start: float) -> None:
            self._view(rgb)[...] = kernels.to_uint8_rgb(self._view(output))

        check(self.cuda._enqueue(stream, "to_uint8_rgb", KERNEL_MS, run))
