// CUDA kernels of p2phd (C API in kernels_cuda.h). The per-element arithmetic comes from
// kernel_math.h, the same definitions the CPU build runs; a thread handles one pixel (or a short
// strip of a row for pooling) and loops over the grid, so any size launches.
#include <cuda_runtime.h>

#include "kernel_math.h"
#include "kernels_cuda.h"

namespace {

using p2phd::boundary;
using p2phd::decode;
using p2phd::encode;
using p2phd::instance_mean;
using p2phd::Storage;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;
constexpr int kStrip = 16;  // pixels of a row one pooling thread sums before its atomics

int64_t blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return blocks < kMaxBlocks ? blocks : kMaxBlocks;
}

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

__global__ void boundaries_kernel(const int32_t* ids, int64_t B, int64_t H, int64_t W,
                                  uint8_t* out) {
  for (int64_t p = grid_start(); p < B * H * W; p += grid_step()) {
    const int64_t q = p % (H * W);
    out[p] = boundary_at(ids, p, q % W, q / W, H, W);
  }
}

// Segmented reduction: each thread sums the runs of equal ids in its strip of a row, then adds
// each run's sums to the instance's float64 accumulators (one atomic per run and channel).
__global__ void pool_sums_kernel(const float* features, const int32_t* ids, int64_t B, int64_t C,
                                 int64_t H, int64_t W, int64_t kmax, double* sums,
                                 double* counts) {
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

__global__ void pool_means_kernel(const double* sums, const double* counts, int64_t B, int64_t C,
                                  int64_t kmax, float* means) {
  for (int64_t i = grid_start(); i < B * kmax * C; i += grid_step()) {
    means[i] = instance_mean(sums[i], counts[i / C]);
  }
}

__global__ void pool_broadcast_kernel(const float* means, const int32_t* ids, int64_t B,
                                      int64_t C, int64_t H, int64_t W, int64_t kmax,
                                      float* broadcast) {
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

template <int DT>
__global__ void assemble_kernel(const uint8_t* labels, const int32_t* ids, const float* table,
                                int64_t B, int64_t H, int64_t W, int label_nc, int edges,
                                int64_t feat, int64_t kmax, void* out,
                                unsigned long long* status) {
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

template <int DT>
__global__ void rgb_kernel(const void* output, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  using S = typename Storage<DT>::type;
  const int64_t plane = H * W;
  for (int64_t p = grid_start(); p < B * plane; p += grid_step()) {
    const S* in = static_cast<const S*>(output) + (p / plane) * 3 * plane + p % plane;
    rgb[3 * p] = p2phd::to_uint8(decode<DT>(in[0]));
    rgb[3 * p + 1] = p2phd::to_uint8(decode<DT>(in[plane]));
    rgb[3 * p + 2] = p2phd::to_uint8(decode<DT>(in[2 * plane]));
  }
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

extern "C" {

int p2phd_cuda_device_count(int* h_count) {
  *h_count = 0;
  const cudaError_t err = cudaGetDeviceCount(h_count);
  if (err != cudaSuccess) *h_count = 0;
  return (int)err;
}

const char* p2phd_cuda_error_string(int error) {
  return cudaGetErrorString(static_cast<cudaError_t>(error));
}

int p2phd_cuda_instance_boundaries(const int32_t* ids, int64_t B, int64_t H, int64_t W,
                                   uint8_t* out, void* stream) {
  const int64_t n = B * H * W;
  if (n == 0) return 0;
  boundaries_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(ids, B, H, W, out);
  return (int)cudaGetLastError();
}

int64_t p2phd_cuda_instance_pool_workspace_bytes(int64_t B, int64_t C, int64_t kmax) {
  return B * kmax * (C + 1) * (int64_t)sizeof(double);
}

int p2phd_cuda_instance_pool(const float* features, const int32_t* ids, int64_t B, int64_t C,
                             int64_t H, int64_t W, int64_t kmax, float* means, float* broadcast,
                             void* workspace, void* stream) {
  if (B * kmax * C == 0) return 0;
  cudaStream_t s = as_stream(stream);
  double* sums = static_cast<double*>(workspace);
  double* counts = sums + B * kmax * C;
  const int64_t bytes = p2phd_cuda_instance_pool_workspace_bytes(B, C, kmax);
  const cudaError_t err = cudaMemsetAsync(workspace, 0, bytes, s);
  if (err != cudaSuccess) return (int)err;
  const int64_t strips = B * H * ((W + kStrip - 1) / kStrip);
  if (strips > 0) {
    pool_sums_kernel<<<blocks_for(strips), kThreads, 0, s>>>(features, ids, B, C, H, W, kmax,
                                                            sums, counts);
  }
  pool_means_kernel<<<blocks_for(B * kmax * C), kThreads, 0, s>>>(sums, counts, B, C, kmax,
                                                                   means);
  if (broadcast && B * H * W > 0) {
    pool_broadcast_kernel<<<blocks_for(B * H * W), kThreads, 0, s>>>(means, ids, B, C, H, W,
                                                                     kmax, broadcast);
  }
  return (int)cudaGetLastError();
}

int p2phd_cuda_assemble_input(const uint8_t* labels, const int32_t* ids, const float* table,
                              int64_t B, int64_t H, int64_t W, int label_nc, int edges,
                              int64_t feat, int64_t kmax, int dtype, void* out,
                              unsigned long long* status, void* stream) {
  cudaStream_t s = as_stream(stream);
  if (status) {
    const cudaError_t err = cudaMemsetAsync(status, 0xff, 2 * sizeof(unsigned long long), s);
    if (err != cudaSuccess) return (int)err;
  }
  const int64_t n = B * H * W;
  if (n == 0) return 0;
  const int64_t blocks = blocks_for(n);
  switch (dtype) {
    case p2phd::kFloat32:
      assemble_kernel<p2phd::kFloat32><<<blocks, kThreads, 0, s>>>(
          labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out, status);
      break;
    case p2phd::kFloat16:
      assemble_kernel<p2phd::kFloat16><<<blocks, kThreads, 0, s>>>(
          labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out, status);
      break;
    case p2phd::kBFloat16:
      assemble_kernel<p2phd::kBFloat16><<<blocks, kThreads, 0, s>>>(
          labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out, status);
      break;
    default:
      return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

int p2phd_cuda_read_status(const unsigned long long* status, unsigned long long* h_status,
                           void* stream) {
  cudaStream_t s = as_stream(stream);
  const cudaError_t err =
      cudaMemcpyAsync(h_status, status, 2 * sizeof(unsigned long long), cudaMemcpyDeviceToHost, s);
  return (int)(err != cudaSuccess ? err : cudaStreamSynchronize(s));
}

int p2phd_cuda_to_uint8_rgb(const void* output, int dtype, int64_t B, int64_t H, int64_t W,
                            uint8_t* rgb, void* stream) {
  const int64_t n = B * H * W;
  if (n == 0) return 0;
  cudaStream_t s = as_stream(stream);
  switch (dtype) {
    case p2phd::kFloat32:
      rgb_kernel<p2phd::kFloat32><<<blocks_for(n), kThreads, 0, s>>>(output, B, H, W, rgb);
      break;
    case p2phd::kFloat16:
      rgb_kernel<p2phd::kFloat16><<<blocks_for(n), kThreads, 0, s>>>(output, B, H, W, rgb);
      break;
    case p2phd::kBFloat16:
      rgb_kernel<p2phd::kBFloat16><<<blocks_for(n), kThreads, 0, s>>>(output, B, H, W, rgb);
      break;
    default:
      return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

}  // extern "C"
