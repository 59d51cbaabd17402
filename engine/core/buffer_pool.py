"""Reusable arrays for the generator's input, one per batch in flight.

The dense input of a batch is tens of megabytes (4 x 39 x 256 x 512 fp32 is 80 MB). Above
glibc's mmap threshold (32 MB at most) every fresh array is new pages, and the kernels that fill
it then take one page fault per 4 KiB, which for the small default model costs about as much as
its inference (measured in the README's Kernels line, `benchmarks/kernels.py`). Arrays handed
back after inference are handed out again; a smaller batch of the same image shape gets the
leading part of a larger one, so a server's varying batch sizes share one array instead of
holding one per size.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class BufferPool:
    """A thread-safe free list of [N, ...] arrays, bounded in bytes and in count: what it holds
    is memory an idle process keeps, so the oldest arrays go first beyond either bound (a server
    fed ever new shapes keeps the few it uses, not one per shape it ever saw)."""

    def __init__(self, max_bytes: int = 512 << 20, max_arrays: int = 4):
        self.max_bytes = max_bytes
        self.max_arrays = max_arrays
        self._free: deque[np.ndarray] = deque()
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
        """A C-contiguous array of `shape` and `dtype` (its contents are whatever was there):
        the leading `shape[0]` items of the smallest free array that holds them, else a new one."""
        dtype, shape = np.dtype(dtype), tuple(shape)
        with self._lock:
            fits = [
                i for i, a in enumerate(self._free)
                if a.dtype == dtype and a.shape[1:] == shape[1:] and a.shape[0] >= shape[0]
            ]  # fmt: skip
            if fits:
                i = min(fits, key=lambda i: self._free[i].shape[0])
                best = self._free[i]
                del self._free[i]
                return best if best.shape[0] == shape[0] else best[: shape[0]]
        return np.empty(shape, dtype)

    def give(self, array: np.ndarray) -> None:
        """Return an array from `take` that no one reads or writes any more."""
        whole = array if array.base is None else array.base
        with self._lock:
            self._free.append(whole)
            while (
                len(self._free) > self.max_arrays
                or sum(a.nbytes for a in self._free) > self.max_bytes
            ):
                self._free.popleft()
