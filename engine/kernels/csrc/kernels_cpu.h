// CPU kernels of p2phd: C++17, threaded (task_pool.h), one pass over the pixels each.
//
// All tensors are C-contiguous; the caller (bindings.cpp, after the Python wrapper validated
// shapes and dtypes) owns every buffer. Nothing here allocates per pixel or loops per instance.
#pragma once

#include <stdint.h>

#include <vector>

namespace p2phd::cpu {

// Per image: the original id and the class (label at its first pixel) of each compact id.
struct Compaction {
  std::vector<std::vector<int32_t>> original;
  std::vector<std::vector<int32_t>> classes;
  int64_t negative_at = -1;  // linear index of a negative instance id (input error), or -1
};

// Instance ids [B,H,W] (int32 >= 0 or uint16) -> dense ids [B,H,W], numbered in order of first
// appearance in raster order. `labels` [B,H,W] gives each instance's class.
template <typename T>
Compaction compact_instances(const T* instances, const uint8_t* labels, int64_t B, int64_t H,
                             int64_t W, int32_t* ids);

// Boundary map [B,H,W] of any integer ids (4-neighbour rule), values 0/1.
void instance_boundaries(const int32_t* ids, int64_t B, int64_t H, int64_t W, uint8_t* out);

// Instance-wise average pooling of features [B,C,H,W] over compact ids [B,H,W] (each in
// [0, kmax)): means [B,kmax,C] (0 for an instance without pixels) and, when `broadcast` is not
// null, the map [B,C,H,W] of each pixel's instance mean. Returns false when an id is out of range.
bool instance_pool(const float* features, const int32_t* ids, int64_t B, int64_t C, int64_t H,
                   int64_t W, int64_t kmax, float* means, float* broadcast);

struct AssembleStatus {
  bool label_out_of_range = false;  // some label >= label_nc
  bool id_out_of_range = false;     // some compact id outside [0, kmax)
};

// The generator input [B, label_nc + edges + feat, H, W] of element type `dtype` (DType):
// one-hot labels, then the instance boundary channel (when `edges`), then `feat` channels of
// table[b, id, f] (table [B,kmax,feat]) or zeros when `table` is null. `ids` may be null when
// neither edges nor a table is used. Every element of `out` is written exactly once, except
// the one-hot channels without `one_hot` (left as they are, for a reader of the labels).
AssembleStatus assemble_input(const uint8_t* labels, const int32_t* ids, const float* table,
                              int64_t B, int64_t H, int64_t W, int label_nc, bool one_hot,
                              bool edges, int64_t feat, int64_t kmax, int dtype, void* out);

// The labels [B,H,W] of a generator input x [B,C,H,W] (float32) whose first label_nc channels
// are one-hot. False where a pixel's label channels are not exactly one 1 and otherwise 0s
// (`labels` then unspecified).
bool one_hot_labels(const float* x, int64_t B, int64_t C, int64_t H, int64_t W, int label_nc,
                    uint8_t* labels);

// A K x K convolution (K odd, reflection padding K/2, stride 1) of such an input, `labels` its
// one_hot_labels: out [B,co_out,H,W] = bias + the sum over taps of taps[dy][dx][label] +
// x[c] * taps[dy][dx][c] for the other channels c >= label_nc. taps [K][K][C][Co] and bias [Co]
// float32, Co a multiple of 16 (zeros past co_out), K <= 31, H and W > K/2.
void one_hot_conv(const float* x, const uint8_t* labels, int64_t B, int64_t C, int64_t H,
                  int64_t W, int label_nc, int K, int64_t Co, const float* taps,
                  const float* bias, int64_t co_out, float* out);

// That convolution followed by instance normalisation (per image and channel: (y - mean) /
// sqrt(variance + eps), times scale[c] plus shift[c]), ReLU and quantisation to levels of
// `step`: out uint8 [B,H,W,co_out] (channels last) = round(z / step) clamped to [0, 255],
// ties to even, what an int8 layer after it reads. Two passes over the labels (the moments,
// then the levels), none over a float output.
void one_hot_conv_levels(const float* x, const uint8_t* labels, int64_t B, int64_t C, int64_t H,
                         int64_t W, int label_nc, int K, int64_t Co, const float* taps,
                         const float* bias, int64_t co_out, double eps, const float* scale,
                         const float* shift, double step, uint8_t* out);

// Generator output [B,3,H,W] of element type `dtype` -> uint8 RGB [B,H,W,3].
void to_uint8_rgb(const void* output, int dtype, int64_t B, int64_t H, int64_t W, uint8_t* rgb);

}  // namespace p2phd::cpu
