// The CUDA kernels (engine/kernels/csrc/kernels_cuda.cu, included as it is) run on the CPU: a
// launch loops over its grid's blocks and threads (cuda_host_shim.h says why that is a legal
// schedule), taking its arguments the way cuLaunchKernel does, from an array of pointers to
// each value. tests/kernels/emulator.py builds this with g++ and drives it through the same
// Python host code (p2phd.engine.kernels.cuda.Kernels) that launches the kernels on a GPU.
#include <stddef.h>
#include <string.h>

#include <tuple>
#include <utility>

#include "cuda_host_shim.h"
#include "kernels_cuda.cu"

namespace {

template <typename... A, size_t... I>
void call(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
  kernel(*static_cast<A*>(params[I])...);
}

// One launch: every (block, thread) of the grid runs the kernel once, blocks in order or
// reversed (a different legal schedule: results must not depend on it).
template <typename... A>
void launch(void (*kernel)(A...), unsigned blocks, unsigned threads, void** params,
            bool reverse) {
  gridDim = {blocks, 1, 1};
  blockDim = {threads, 1, 1};
  for (unsigned i = 0; i < blocks; ++i) {
    blockIdx.x = reverse ? blocks - 1 - i : i;
    for (unsigned t = 0; t < threads; ++t) {
      threadIdx.x = reverse ? threads - 1 - t : t;
      call(kernel, params, std::index_sequence_for<A...>{});
    }
  }
}

struct Entry {
  const char* name;
  void (*launch)(unsigned, unsigned, void**, bool);
  int arity;
  size_t sizes[16];  // sizeof each parameter, as cuLaunchKernel copies them
};

template <auto kernel>
struct Launcher;

template <typename... A, void (*kernel)(A...)>
struct Launcher<kernel> {
  static void run(unsigned blocks, unsigned threads, void** params, bool reverse) {
    launch(kernel, blocks, threads, params, reverse);
  }
  static Entry entry(const char* name) { return {name, &run, sizeof...(A), {sizeof(A)...}}; }
};

#define P2PHD_KERNEL(k) Launcher<k>::entry(#k)

const Entry kKernels[] = {
    P2PHD_KERNEL(p2phd_boundaries),    P2PHD_KERNEL(p2phd_pool_sums),
    P2PHD_KERNEL(p2phd_pool_means),    P2PHD_KERNEL(p2phd_pool_broadcast),
    P2PHD_KERNEL(p2phd_assemble_f32),  P2PHD_KERNEL(p2phd_assemble_f16),
    P2PHD_KERNEL(p2phd_assemble_bf16), P2PHD_KERNEL(p2phd_rgb_f32),
    P2PHD_KERNEL(p2phd_rgb_f16),       P2PHD_KERNEL(p2phd_rgb_bf16),
};

const Entry* find(const char* name) {
  for (const Entry& e : kKernels) {
    if (strcmp(e.name, name) == 0) return &e;
  }
  return nullptr;
}

}  // namespace

extern "C" {

// Runs kernel `name` on a grid of `blocks` x `threads`; -1 when there is no such kernel.
int p2phd_emulate(const char* name, unsigned blocks, unsigned threads, void** params,
                  int reverse) {
  const Entry* e = find(name);
  if (!e) return -1;
  e->launch(blocks, threads, params, reverse != 0);
  return 0;
}

// The byte size of each of kernel `name`'s parameters into `sizes`; returns their number, or
// -1 when there is no such kernel.
int p2phd_emulated_signature(const char* name, size_t* sizes, int capacity) {
  const Entry* e = find(name);
  if (!e) return -1;
  for (int i = 0; i < e->arity && i < capacity; ++i) sizes[i] = e->sizes[i];
  return e->arity;
}

}  // extern "C"
