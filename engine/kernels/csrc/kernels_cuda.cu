// CUDA kernels of p2phd. The per-element arithmetic comes from kernel_math.h, the same
// definitions the CPU build runs; a thread handles one pixel (or a strip of a row for pooling)
// and loops over the grid, so any grid size covers any image.
//
// This file holds the kernels only: engine/kernels/cuda.py compiles it at first use with NVRTC
// for the device's architecture and launches the extern "C" entry points below (grid sizes,
// workspace and argument packing are computed there). It includes nothing but kernel_math.h,
// so NVRTC, nvcc (`make cuda-check`) and the host compiler (tests/kernels/emulation: the launch
// grid emulated on the CPU) all compile it as it is.
#include "kernel_math.h"

namespace {

using p2phd::boundary;
using p2phd::decode;
using p2phd::encode;
using p2phd::instance_mean;
using p2phd::Storage;

constexpr int kStrip = 64;  // pixels of a row one pooling thread sums before its atomics

__device__ int64_t grid_start() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ int64_t grid_step() { return (int64_t)gridDim.x * blockDim.x; }

// The boundary rule at linear pixel p = ((b*H + y)*W + x); neighbours outside the image count
// as the pixel itself.
__device__ uint8_t boundary_at(const int32_t* ids, int64_t p, int64_t x, int64_t y, int64_t H,
                               int64_t W) {
  const int32_t self = ids[p];
  return boundary(self, x > 0 ? ids[p - 1] : self, x + 1 < W ? ids[p + 1] : self,
                  y > 0 ? ids[p - W] : self, y + 1 < H ? ids[p + W] : self);
}

// The generator input at every pixel of the grid (see p2phd_assemble_f32).
template <int DT>
__device__ void assemble(const uint8_t* labels, const int32_t* ids, const float* table, int64_t B,
                         int64_t H, int64_t W, int label_nc, int edges, int64_t feat,
                         int64_t kmax, void* out, unsigned long long* status) {
  using S = typename Storage<DT>::type;
  const S one = encode<DT>(1.0f), zero = encode<DT>(0.0f);
  const int64_t plane = H * W, feat0 = label_nc + (edges ? 1 : 0), channels = feat0 + feat;
  for (int64_t p = grid_start(); p < B * plane; p += grid_step()) {
    const int64_t b = p / plane, q = p % plane;
    S* d = static_cast<S*>(out) + b * channels * plane + q;
    const int label = labels[p];
    if (status && label >= label_nc) atomicMin(&status[0], (unsigned long long)p);
    for (int c = 0; c < label_nc; ++c) d[c * plane] = label == c ? one : zero;
    if (edges) d[label_nc * plane] = boundary_at(ids, p, q % W, q / W, H, W) ? one : zero;
    if (feat > 0 && table) {
      const int32_t id = ids[p];
      const bool valid = id >= 0 && id < kmax;
      if (status && !valid) atomicMin(&status[1], (unsigned long long)p);
      const float* values = table + (b * kmax + (valid ? id : 0)) * feat;
      for (int64_t f = 0; f < feat; ++f) d[(feat0 + f) * plane] = encode<DT>(values[f]);
    } else {
      for (int64_t f = 0; f < feat; ++f) d[(feat0 + f) * plane] = zero;
    }
  }
}

// Generator output [B,3,H,W] -> uint8 RGB [B,H,W,3] at every pixel of the grid.
template <int DT>
__device__ void to_rgb(const void* output, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  using S = typename Storage<DT>::type;
  const int64_t plane = H * W;
  for (int64_t p = grid_start(); p < B * plane; p += grid_step()) {
    const S* in = static_cast<const S*>(output) + (p / plane) * 3 * plane + p % plane;
    rgb[3 * p] = p2phd::to_uint8(decode<DT>(in[0]));
    rgb[3 * p + 1] = p2phd::to_uint8(decode<DT>(in[plane]));
    rgb[3 * p + 2] = p2phd::to_uint8(decode<DT>(in[2 * plane]));
  }
}

}  // namespace

// The entry points, by the names cuda.py looks up (C linkage: no mangling). Pointers are device
// memory, tensors C-contiguous; every kernel loops over the grid, so any launch size is correct.
extern "C" {

// Boundary map uint8 [B,H,W] (0/1) of int32 ids [B,H,W].
__global__ void p2phd_boundaries(const int32_t* ids, int64_t B, int64_t H, int64_t W,
                                 uint8_t* out) {
  for (int64_t p = grid_start(); p < B * H * W; p += grid_step()) {
    const int64_t q = p % (H * W);
    out[p] = boundary_at(ids, p, q % W, q / W, H, W);
  }
}

// Instance pooling, step 1 of 3: float64 sums [B,kmax,C] and pixel counts [B,kmax], zeroed by
// the caller. Segmented reduction: each thread sums the runs of equal ids in its strip of kStrip
// pixels of a row, then adds each run's sums to the instance's accumulators (one atomic per run and
// channel). Ids outside [0, kmax) are skipped.
__global__ void p2phd_pool_sums(const float* features, const int32_t* ids, int64_t B, int64_t C,
                                int64_t H, int64_t W, int64_t kmax, double* sums, double* counts) {
  const int64_t strips = (W + kStrip - 1) / kStrip;
  for (int64_t s = grid_start(); s < B * H * strips; s += grid_step()) {
    const int64_t r = s / strips, b = r / H, y = r % H;
    const int64_t x1 = min((s % strips + 1) * kStrip, W);
    const int32_t* row = ids + r * W;
    for (int64_t x = (s % strips) * kStrip; x < x1;) {
      const int32_t id = row[x];
      int64_t end = x + 1;
      while (end < x1 && row[end] == id) ++end;
      if (id >= 0 && id < kmax) {
        atomicAdd(&counts[b * kmax + id], (double)(end - x));
        for (int64_t c = 0; c < C; ++c) {
          const float* f = features + ((b * C + c) * H + y) * W;
          float sum = 0.0f;
          for (int64_t i = x; i < end; ++i) sum += f[i];
          atomicAdd(&sums[(b * kmax + id) * C + c], (double)sum);
        }
      }
      x = end;
    }
  }
}

// Step 2: means float [B,kmax,C] (0 for an instance without pixels).
__global__ void p2phd_pool_means(const double* sums, const double* counts, int64_t B, int64_t C,
                                 int64_t kmax, float* means) {
  for (int64_t i = grid_start(); i < B * kmax * C; i += grid_step()) {
    means[i] = instance_mean(sums[i], counts[i / C]);
  }
}

// Step 3 (optional): the map float [B,C,H,W] of each pixel's instance mean (0 for an id outside
// [0, kmax)).
__global__ void p2phd_pool_broadcast(const float* means, const int32_t* ids, int64_t B, int64_t C,
                                     int64_t H, int64_t W, int64_t kmax, float* broadcast) {
  const int64_t plane = H * W;
  for (int64_t p = grid_start(); p < B * plane; p += grid_step()) {
    const int64_t b = p / plane, q = p % plane;
    const int32_t id = ids[p];
    const bool valid = id >= 0 && id < kmax;
    for (int64_t c = 0; c < C; ++c) {
      broadcast[(b * C + c) * plane + q] = valid ? means[(b * kmax + id) * C + c] : 0.0f;
    }
  }
}

// The generator input [B, label_nc + edges + feat, H, W], every element written once: one-hot
// labels, the boundary channel when `edges`, then table[b, id, f] (float [B,kmax,feat]) or zeros
// when `table` is null. `ids` may be null when neither edges nor a table is used. When `status`
// (2 x uint64, all ones from the caller) is not null it receives the smallest linear pixel index
// with a label >= label_nc and with an id outside [0, kmax). One kernel per element type.
__global__ void p2phd_assemble_f32(const uint8_t* labels, const int32_t* ids, const float* table,
                                   int64_t B, int64_t H, int64_t W, int label_nc, int edges,
                                   int64_t feat, int64_t kmax, void* out,
                                   unsigned long long* status) {
  assemble<p2phd::kFloat32>(labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out, status);
}

__global__ void p2phd_assemble_f16(const uint8_t* labels, const int32_t* ids, const float* table,
                                   int64_t B, int64_t H, int64_t W, int label_nc, int edges,
                                   int64_t feat, int64_t kmax, void* out,
                                   unsigned long long* status) {
  assemble<p2phd::kFloat16>(labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out, status);
}

__global__ void p2phd_assemble_bf16(const uint8_t* labels, const int32_t* ids, const float* table,
                                    int64_t B, int64_t H, int64_t W, int label_nc, int edges,
                                    int64_t feat, int64_t kmax, void* out,
                                    unsigned long long* status) {
  assemble<p2phd::kBFloat16>(labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out,
                             status);
}

// Generator output [B,3,H,W] of the kernel's element type -> uint8 RGB [B,H,W,3].
__global__ void p2phd_rgb_f32(const void* output, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  to_rgb<p2phd::kFloat32>(output, B, H, W, rgb);
}

__global__ void p2phd_rgb_f16(const void* output, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  to_rgb<p2phd::kFloat16>(output, B, H, W, rgb);
}

__global__ void p2phd_rgb_bf16(const void* output, int64_t B, int64_t H, int64_t W,
                               uint8_t* rgb) {
  to_rgb<p2phd::kBFloat16>(output, B, H, W, rgb);
}

}  // extern "C"
