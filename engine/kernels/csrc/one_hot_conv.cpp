// The generator's first convolution computed from the label map (see kernels_cpu.h).
//
// Over a one-hot input a K x K convolution is a sum of weight rows: each tap adds the row of
// the label under it, so a pixel costs K*K vector adds instead of K*K*C multiply-adds. Where a
// window row is one label (and its dense channels constant), its K taps are one precomputed
// row sum: a label map is mostly such regions (Cityscapes at 256x512: 3 ms an image on two
// Zen 4 cores, against 13 ms for the int8 convolution it replaces with its input reorder).
#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "kernels_cpu.h"
#include "task_pool.h"

// The accumulation gets AVX-512 and AVX2 clones next to the baseline x86-64 one.
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define P2PHD_WIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef P2PHD_WIDE_CLONES
#define P2PHD_WIDE_CLONES
#endif

namespace p2phd::cpu {
namespace {

// 16 floats; loads and stores at any float alignment (the compiler picks the widest vectors
// the clone's instruction set has).
typedef float f32x16 __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int64_t kLanes = 16;
constexpr int kMaxVectors = 4;  // output channels per pass: 64, in registers

enum Window : uint8_t { kOneLabel = 1, kConstantDense = 2 };

inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); }

// Window flags of one input row: bit kOneLabel where labels[x-R .. x+R] are one label, bit
// kConstantDense where each dense channel is constant there; 0 within R of either end (those
// windows reflect, and take the per-tap path).
void window_flags(const uint8_t* labels, const float* dense, int64_t D, int64_t plane, int64_t W,
                  int K, uint8_t* flags) {
  const int64_t R = K / 2;
  std::fill_n(flags, W, 0);
  int64_t same = 0, constant = 0;  // lengths of the runs ending at x
  for (int64_t x = 0; x < W; ++x) {
    same = x > 0 && labels[x] == labels[x - 1] ? same + 1 : 1;
    bool equal = x > 0;
    for (int64_t d = 0; d < D && equal; ++d) equal = dense[d * plane + x] == dense[d * plane + x - 1];
    constant = equal ? constant + 1 : 1;
    const int64_t center = x - R;
    if (center >= R) flags[center] = (same >= K ? kOneLabel : 0) | (constant >= K ? kConstantDense : 0);
  }
  for (int64_t x = std::max<int64_t>(0, W - R); x < W; ++x) flags[x] = 0;
}

// Per pixel of one row over the label channels (planes `plane` apart): the sum of the values,
// the sum of value * channel, and the sum of (v(v-1))^2, which is 0 only where every value is 0
// or 1 (a NaN or an infinity makes it NaN or infinite). One-hot where the first is 1 and the
// last 0; the second is then the label. Sums of small integers: exact in float.
P2PHD_WIDE_CLONES void label_sums(const float* image, int64_t plane, int64_t W, int label_nc,
                                  float* count, float* index, float* error) {
  std::fill_n(count, W, 0.0f);
  std::fill_n(index, W, 0.0f);
  std::fill_n(error, W, 0.0f);
  for (int c = 0; c < label_nc; ++c) {
    const float* v = image + c * plane;
    const float label = (float)c;
#pragma omp simd
    for (int64_t i = 0; i < W; ++i) {
      const float off = v[i] * (v[i] - 1.0f);
      count[i] += v[i];
      index[i] += v[i] * label;
      error[i] += off * off;
    }
  }
}

// Transposes a 16 x 16 block in four stages of two-vector shuffles (each swaps the off-diagonal
// d x d sub-blocks of every 2d x 2d block, d = 8, 4, 2, 1): 64 shuffles instead of 256 element
// moves. GCC's generic vector shuffle; other compilers move elements.
#if defined(__GNUC__) && !defined(__clang__)
typedef int32_t i32x16 __attribute__((vector_size(64)));

// Lane j of the first result: a[j] where bit D of j is clear, else b[j & ~D]; of the second:
// a[j | D] where it is clear, else b[j] (lanes 16..31 index b).
template <int D, int... J>
inline void transpose_stage(f32x16* r, std::integer_sequence<int, J...>) {
  static constexpr i32x16 lo = {((J & D) ? 16 + (J & ~D) : J)...};
  static constexpr i32x16 hi = {((J & D) ? 16 + J : (J | D))...};
  for (int i = 0; i < 16; ++i) {
    if (i & D) continue;
    const f32x16 a = r[i], b = r[i + D];
    r[i] = __builtin_shuffle(a, b, lo);
    r[i + D] = __builtin_shuffle(a, b, hi);
  }
}

inline void transpose16(f32x16* r) {
  constexpr auto lanes = std::make_integer_sequence<int, 16>{};
  transpose_stage<8>(r, lanes);
  transpose_stage<4>(r, lanes);
  transpose_stage<2>(r, lanes);
  transpose_stage<1>(r, lanes);
}
#else
inline void transpose16(f32x16* r) {
  float m[16][16];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) m[j][i] = r[i][j];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) r[i][j] = m[i][j];
}
#endif

template <int NV>
struct Acc {
  f32x16 v[NV];
  void add(const float* w) {
    for (int i = 0; i < NV; ++i) v[i] += *reinterpret_cast<const f32x16*>(w + i * kLanes);
  }
  void fma(float s, const float* w) {
    for (int i = 0; i < NV; ++i) v[i] += s * *reinterpret_cast<const f32x16*>(w + i * kLanes);
  }
};

// The input rows under each tap row dy (reflected at the image's top and bottom).
struct Rows {
  const uint8_t* labels[32];
  const float* dense[32];
  const uint8_t* flags[32];
};

// One output row of NV*16 channels (the first `planes` of them written), `out` their first
// plane's row: taps [K][K][C][Co] and rows [K][C][Co] (taps summed over the tap row) offset to
// those channels.
template <int NV>
P2PHD_WIDE_CLONES void conv_row(const Rows& in, int64_t D, int64_t plane, int64_t W, int K,
                                int label_nc, int64_t C, int64_t Co, const float* taps,
                                const float* rows, const float* bias, int64_t planes,
                                f32x16* tiles, float* out) {
  const int64_t R = K / 2;
  // The row in tiles of 16 pixels: tiles[t * NV + v] holds the block v of channels of pixel
  // t * 16 + i as vector i (channels last), transposed to planes once the row is done.
  for (int64_t x = 0; x < W; ++x) {
    Acc<NV> s;
    for (int v = 0; v < NV; ++v) s.v[v] = *reinterpret_cast<const f32x16*>(bias + v * kLanes);
    for (int dy = 0; dy < K; ++dy) {
      const uint8_t* lab = in.labels[dy];
      const float* dense = in.dense[dy];
      const uint8_t flag = in.flags[dy][x];
      const float* tap_row = taps + (int64_t)dy * K * C * Co;
      const float* row_sum = rows + (int64_t)dy * C * Co;
      if (flag & kOneLabel) {
        s.add(row_sum + lab[x] * Co);
      } else {
        for (int dx = 0; dx < K; ++dx) s.add(tap_row + (dx * C + lab[reflect(x + dx - R, W)]) * Co);
      }
      if (flag & kConstantDense) {
        for (int64_t d = 0; d < D; ++d) {
          const float v = dense[d * plane + x];
          if (v != 0.0f) s.fma(v, row_sum + (label_nc + d) * Co);
        }
      } else {
        for (int dx = 0; dx < K; ++dx) {
          const int64_t xx = reflect(x + dx - R, W);
          for (int64_t d = 0; d < D; ++d) {
            const float v = dense[d * plane + xx];
            if (v != 0.0f) s.fma(v, tap_row + (dx * C + label_nc + d) * Co);
          }
        }
      }
    }
    for (int v = 0; v < NV; ++v) tiles[(x / kLanes * NV + v) * kLanes + x % kLanes] = s.v[v];
  }
  const int64_t n_tiles = (W + kLanes - 1) / kLanes;
  for (int64_t t = 0; t < n_tiles * NV; ++t) transpose16(tiles + t * kLanes);
  for (int v = 0; v < NV; ++v) {
    for (int c = 0; c < kLanes && v * kLanes + c < planes; ++c) {  // one plane's row, in order
      float* o = out + (v * kLanes + c) * plane;
      for (int64_t t = 0; t < n_tiles; ++t) {
        const f32x16& pixels = tiles[(t * NV + v) * kLanes + c];
        if ((t + 1) * kLanes <= W) {
          *reinterpret_cast<f32x16*>(o + t * kLanes) = pixels;
        } else {
          for (int64_t i = 0; t * kLanes + i < W; ++i) o[t * kLanes + i] = pixels[i];
        }
      }
    }
  }
}

using RowFn = void (*)(const Rows&, int64_t, int64_t, int64_t, int, int, int64_t, int64_t,
                       const float*, const float*, const float*, int64_t, f32x16*, float*);
constexpr RowFn kRowFns[kMaxVectors + 1] = {nullptr, conv_row<1>, conv_row<2>, conv_row<3>,
                                            conv_row<4>};

}  // namespace

bool one_hot_labels(const float* x, int64_t B, int64_t C, int64_t H, int64_t W, int label_nc,
                    uint8_t* labels) {
  const int64_t plane = H * W;
  std::atomic<bool> valid{true};
  std::vector<std::vector<float>> scratch(kernel_threads(), std::vector<float>(3 * W));
  parallel_for(B * H, [&](int64_t r, int worker) {
    const int64_t b = r / H, y = r % H;
    float* sums = scratch[worker].data();
    label_sums(x + b * C * plane + y * W, plane, W, label_nc, sums, sums + W, sums + 2 * W);
    bool ok = true;
    for (int64_t i = 0; i < W; ++i) {
      const bool hot = sums[i] == 1.0f && sums[2 * W + i] == 0.0f;
      ok &= hot;
      labels[r * W + i] = hot ? (uint8_t)sums[W + i] : 0;  // converted only where in range
    }
    if (!ok) valid.store(false, std::memory_order_relaxed);
  });
  return valid.load();
}

void one_hot_conv(const float* x, const uint8_t* labels, int64_t B, int64_t C, int64_t H,
                  int64_t W, int label_nc, int K, int64_t Co, const float* taps,
                  const float* bias, int64_t co_out, float* out) {
  const int64_t plane = H * W, D = C - label_nc, R = K / 2;
  std::vector<float> rows((size_t)K * C * Co, 0.0f);  // taps summed over each tap row
  for (int dy = 0; dy < K; ++dy)
    for (int dx = 0; dx < K; ++dx)
      for (int64_t i = 0; i < C * Co; ++i) rows[dy * C * Co + i] += taps[(dy * K + dx) * C * Co + i];
  std::vector<uint8_t> flags((size_t)(B * plane));
  parallel_for(B * H, [&](int64_t r, int) {
    const int64_t b = r / H, y = r % H;
    window_flags(labels + r * W, x + (b * C + label_nc) * plane + y * W, D, plane, W, K,
                 flags.data() + r * W);
  });
  const size_t tile_vectors = (size_t)((W + kLanes - 1) / kLanes * kMaxVectors * kLanes);
  std::vector<std::vector<float>> tiles(kernel_threads(), std::vector<float>(tile_vectors * kLanes));
  parallel_for(B * H, [&](int64_t r, int worker) {
    const int64_t b = r / H, y = r % H;
    Rows in;
    for (int dy = 0; dy < K; ++dy) {
      const int64_t row = reflect(y + dy - R, H);
      in.labels[dy] = labels + (b * H + row) * W;
      in.dense[dy] = x + (b * C + label_nc) * plane + row * W;
      in.flags[dy] = flags.data() + (b * H + row) * W;
    }
    for (int64_t c0 = 0; c0 < Co; c0 += kMaxVectors * kLanes) {
      const int nv = (int)std::min<int64_t>(kMaxVectors, (Co - c0) / kLanes);
      kRowFns[nv](in, D, plane, W, K, label_nc, C, Co, taps + c0, rows.data() + c0, bias + c0,
                  co_out - c0, reinterpret_cast<f32x16*>(tiles[worker].data()),
                  out + (b * co_out + c0) * plane + y * W);
    }
  });
}

}  // namespace p2phd::cpu
