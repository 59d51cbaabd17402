// The CUDA names kernels_cuda.cu uses, for the host compiler: the kernels compile as plain C++
// and emulated_kernels.cpp runs each launch's grid as loops over blocks and threads.
//
// Why sequential loops are a faithful schedule for these kernels: none uses shared memory,
// __syncthreads or warp operations, so no thread waits on or reads what another thread of its
// block writes; threads only meet in global memory through atomics (pooling sums, the status
// minimum), which are commutative. Any order of whole threads is then a legal GPU schedule, and
// the emulation runs two (blocks forwards and backwards). A kernel that starts using shared
// memory with __syncthreads would need each block's threads run in phases between barriers;
// __syncthreads is deliberately left undefined here, so such a kernel fails to compile.
#pragma once

#include <stdint.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
  unsigned int x = 0, y = 0, z = 0;
};
using dim3 = uint3;

// The launch coordinates of the emulated thread running now (thread-local: launches from
// several host threads do not share them).
inline thread_local uint3 blockIdx, threadIdx;
inline thread_local dim3 blockDim, gridDim;

template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}

// CUDA's atomics, with their return value (the old contents), as compare-and-swap loops.
inline double atomicAdd(double* address, double value) {
  double old, sum;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  do {
    sum = old + value;
  } while (!__atomic_compare_exchange(address, &old, &sum, true, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED));
  return old;
}

inline unsigned long long atomicMin(unsigned long long* address, unsigned long long value) {
  unsigned long long old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (value < old && !__atomic_compare_exchange_n(address, &old, value, true,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
