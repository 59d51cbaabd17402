// The C API of libp2phd_kernels_cuda.so: the p2phd kernels on device pointers and a CUDA stream.
//
// Every pointer is device memory (C-contiguous, as in kernels_cpu.h) unless named h_*; `stream`
// is a cudaStream_t (null: the default stream). Each call only enqueues work and returns a
// cudaError_t as int (0 on success; p2phd_cuda_error_string names it). Instance-id compaction
// runs on the CPU (p2phd.engine.kernels.compact_instances): the GPU kernels take its dense ids,
// except boundaries, which accept any int32 ids.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Number of visible CUDA devices (0 when there is no driver or device).
int p2phd_cuda_device_count(int* h_count);
const char* p2phd_cuda_error_string(int error);

// Boundary map uint8 [B,H,W] (0/1) of int32 ids [B,H,W].
int p2phd_cuda_instance_boundaries(const int32_t* ids, int64_t B, int64_t H, int64_t W,
                                   uint8_t* out, void* stream);

// Instance-wise average pooling: means float [B,kmax,C] (0 for an instance without pixels) and,
// when `broadcast` is not null, the map float [B,C,H,W]. `workspace` is device memory of
// p2phd_cuda_instance_pool_workspace_bytes(B, C, kmax) bytes (float64 sums and pixel counts).
// Ids outside [0, kmax) are skipped (their pixels get 0 in the map).
int64_t p2phd_cuda_instance_pool_workspace_bytes(int64_t B, int64_t C, int64_t kmax);
int p2phd_cuda_instance_pool(const float* features, const int32_t* ids, int64_t B, int64_t C,
                             int64_t H, int64_t W, int64_t kmax, float* means, float* broadcast,
                             void* workspace, void* stream);

// The generator input [B, label_nc + edges + feat, H, W] of element type `dtype` (0 float32,
// 1 float16, 2 bfloat16), every element written once: one-hot labels, the boundary channel
// when `edges`, then table[b, id, f] (float [B,kmax,feat]) or zeros when `table` is null. `ids`
// may be null when neither edges nor a table is used. When `status` (2 x uint64, device) is not
// null it receives the smallest linear pixel index with a label >= label_nc and with an id
// outside [0, kmax), or UINT64_MAX when there is none.
int p2phd_cuda_assemble_input(const uint8_t* labels, const int32_t* ids, const float* table,
                              int64_t B, int64_t H, int64_t W, int label_nc, int edges,
                              int64_t feat, int64_t kmax, int dtype, void* out,
                              unsigned long long* status, void* stream);

// Copies `status` to the host and waits for the stream (a synchronisation point).
int p2phd_cuda_read_status(const unsigned long long* status, unsigned long long* h_status,
                           void* stream);

// Generator output [B,3,H,W] of element type `dtype` -> uint8 RGB [B,H,W,3].
int p2phd_cuda_to_uint8_rgb(const void* output, int dtype, int64_t B, int64_t H, int64_t W,
                            uint8_t* rgb, void* stream);

#ifdef __cplusplus
}
#endif
