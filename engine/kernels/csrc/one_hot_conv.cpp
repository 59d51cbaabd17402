// The generator's first convolution computed from the label map (see kernels_cpu.h).
//
// Over a one-hot input a K x K convolution is a sum of weight rows: each tap adds the row of
// the label under it, so a pixel costs K*K vector adds instead of K*K*C multiply-adds. Where a
// window row is one label (and its dense channels constant), its K taps are one precomputed
// row sum: a label map is mostly such regions. A binary first dense channel (the instance
// boundaries) adds one precomputed row per tap row too, indexed by its window's bit pattern,
// instead of a multiply-add per set tap (Cityscapes at 256x512 on two Zen 4 cores: 3.6 ms an
// image, 5.4 with per-tap edges, against 13 ms for the int8 convolution with its input
// reorder). one_hot_conv_levels sums it twice, for the instance normalisation's moments and
// then for the uint8 levels an int8 layer reads: 4.9 ms, no float output stored.
#include <algorithm>
#include <atomic>
#include <cmath>
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

// kConstantRest: the dense channels after the first (which a binary first channel's patterns
// take instead).
enum Window : uint8_t { kOneLabel = 1, kConstantDense = 2, kConstantRest = 4 };
constexpr int kMaxPatternTaps = 7;  // patterns of K binary values index a table of 2^K rows

inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); }

// Window flags of one input row: bit kOneLabel where labels[x-R .. x+R] are one label, bits
// kConstantDense and kConstantRest where each dense channel (after the first) is constant
// there; 0 within R of either end (those windows reflect, and take the per-tap path).
void window_flags(const uint8_t* labels, const float* dense, int64_t D, int64_t plane, int64_t W,
                  int K, uint8_t* flags) {
  const int64_t R = K / 2;
  std::fill_n(flags, W, 0);
  int64_t same = 0, constant = 0, rest = 0;  // lengths of the runs ending at x
  for (int64_t x = 0; x < W; ++x) {
    same = x > 0 && labels[x] == labels[x - 1] ? same + 1 : 1;
    bool equal = x > 0;
    for (int64_t d = 1; d < D && equal; ++d) equal = dense[d * plane + x] == dense[d * plane + x - 1];
    rest = equal ? rest + 1 : 1;
    constant = equal && (D == 0 || dense[x] == dense[x - 1]) ? constant + 1 : 1;
    const int64_t center = x - R;
    if (center >= R)
      flags[center] = (same >= K ? kOneLabel : 0) | (constant >= K ? kConstantDense : 0) |
                      (rest >= K ? kConstantRest : 0);
  }
  for (int64_t x = std::max<int64_t>(0, W - R); x < W; ++x) flags[x] = 0;
}

// The pattern of one input row's first dense channel under each window: bit dx set where
// v[x + dx - R] (reflected) is 1. False where the row has a value other than 0 and 1.
bool window_patterns(const float* v, int64_t W, int K, uint8_t* patterns) {
  const int64_t R = K / 2;
  bool binary = true;
  for (int64_t x = 0; x < W; ++x) binary &= v[x] == 0.0f || v[x] == 1.0f;
  uint32_t pattern = 0;  // window x's bit dx is window x-1's bit dx+1
  for (int dx = 0; dx < K - 1; ++dx) pattern |= (uint32_t)(v[reflect(dx - R, W)] != 0.0f) << (dx + 1);
  for (int64_t x = 0; x < W; ++x) {
    pattern = (pattern >> 1) | ((uint32_t)(v[reflect(x + R, W)] != 0.0f) << (K - 1));
    patterns[x] = (uint8_t)pattern;
  }
  return binary;
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
  const uint8_t* patterns[32];
};

// What a pass over NV*16 output channels reads besides the rows: taps [K][K][C][Co], rows
// [K][C][Co] (taps summed over the tap row) and bias, offset to those channels; and where the
// first dense channel is binary, `patterns` [K][2^K][Co]: the first dense channel's taps of
// the tap row summed over each pattern's set bits (else null).
struct Conv {
  int64_t D, plane, W;
  int K, label_nc;
  int64_t C, Co;
  const float* taps;
  const float* rows;
  const float* bias;
  const float* patterns;
};

// n dense channels' values at `v` (`plane` floats apart) times their weight rows at `w` (`Co`
// floats apart), even channels into `even`, odd ones into `odd`.
template <int NV>
__attribute__((always_inline)) inline void dense_taps(const float* v, int64_t plane, int64_t n,
                                                      const float* w, int64_t Co, Acc<NV>& even,
                                                      Acc<NV>& odd) {
  int64_t d = 0;
  for (; d + 1 < n; d += 2) {
    even.fma(v[d * plane], w + d * Co);
    odd.fma(v[(d + 1) * plane], w + (d + 1) * Co);
  }
  if (d < n) even.fma(v[d * plane], w + d * Co);
}

// The NV*16 channels of the convolution at pixel x of the output row whose input rows are `in`.
// The dense channels' products go to two sums of their own, by channel parity, and into the
// labels' sum only at the end: three dependency chains where one chain of adds was the limit
// with one or two vectors of channels.
template <int NV>
__attribute__((always_inline)) inline Acc<NV> pixel(const Conv& p, const Rows& in, int64_t x) {
  const int64_t R = p.K / 2, C = p.C, Co = p.Co, D = p.D, plane = p.plane;
  const int64_t first = p.patterns ? 1 : 0;  // the first dense channel the taps take
  const int64_t dense0 = p.label_nc + first;  // its weights' row in a tap's C
  const uint8_t constant = p.patterns ? kConstantRest : kConstantDense;
  Acc<NV> s, even{}, odd{};
  for (int v = 0; v < NV; ++v) s.v[v] = *reinterpret_cast<const f32x16*>(p.bias + v * kLanes);
  for (int dy = 0; dy < p.K; ++dy) {
    const uint8_t* lab = in.labels[dy];
    const float* dense = in.dense[dy] + first * plane;
    const uint8_t flag = in.flags[dy][x];
    const float* tap_row = p.taps + (int64_t)dy * p.K * C * Co;
    const float* row_sum = p.rows + (int64_t)dy * C * Co;
    if (flag & kOneLabel) {
      s.add(row_sum + lab[x] * Co);
    } else {
      for (int dx = 0; dx < p.K; ++dx) s.add(tap_row + (dx * C + lab[reflect(x + dx - R, p.W)]) * Co);
    }
    if (p.patterns) {
      const uint8_t pattern = in.patterns[dy][x];
      if (pattern) s.add(p.patterns + (((int64_t)dy << p.K) + pattern) * Co);
    }
    if (flag & constant) {  // one value per channel over the tap row: its row sum
      dense_taps(dense + x, plane, D - first, row_sum + dense0 * Co, Co, even, odd);
    } else {
      for (int dx = 0; dx < p.K; ++dx)
        dense_taps(dense + reflect(x + dx - R, p.W), plane, D - first,
                   tap_row + (dx * C + dense0) * Co, Co, even, odd);
    }
  }
  if (D > first)
    for (int v = 0; v < NV; ++v) s.v[v] += even.v[v] + odd.v[v];
  return s;
}

// One output row of NV*16 channels (the first `planes` of them written), `out` their first
// plane's row.
template <int NV>
P2PHD_WIDE_CLONES void conv_row(const Conv& p, const Rows& in, int64_t planes, f32x16* tiles,
                                float* out) {
  const int64_t W = p.W;
  // The row in tiles of 16 pixels: tiles[t * NV + v] holds the block v of channels of pixel
  // t * 16 + i as vector i (channels last), transposed to planes once the row is done.
  for (int64_t x = 0; x < W; ++x) {
    const Acc<NV> s = pixel<NV>(p, in, x);
    for (int v = 0; v < NV; ++v) tiles[(x / kLanes * NV + v) * kLanes + x % kLanes] = s.v[v];
  }
  const int64_t n_tiles = (W + kLanes - 1) / kLanes;
  for (int64_t t = 0; t < n_tiles * NV; ++t) transpose16(tiles + t * kLanes);
  for (int v = 0; v < NV; ++v) {
    for (int c = 0; c < kLanes && v * kLanes + c < planes; ++c) {  // one plane's row, in order
      float* o = out + (v * kLanes + c) * p.plane;
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

// The sums over one output row of its NV*16 channels less their bias, and of their squares
// (less the bias: the mean's share, which would cost the variance precision in float).
template <int NV>
P2PHD_WIDE_CLONES void moments_row(const Conv& p, const Rows& in, float* sums, float* squares) {
  Acc<NV> sum{}, square{};
  for (int64_t x = 0; x < p.W; ++x) {
    const Acc<NV> s = pixel<NV>(p, in, x);
    for (int v = 0; v < NV; ++v) {
      const f32x16 d = s.v[v] - *reinterpret_cast<const f32x16*>(p.bias + v * kLanes);
      sum.v[v] += d;
      square.v[v] += d * d;
    }
  }
  for (int v = 0; v < NV; ++v) {
    *reinterpret_cast<f32x16*>(sums + v * kLanes) = sum.v[v];
    *reinterpret_cast<f32x16*>(squares + v * kLanes) = square.v[v];
  }
}

typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16), aligned(1), may_alias));

// One output row of NV*16 channels as levels: round(y * gain + offset) clamped to [0, 255]
// (NaN to 0), channels last: `out` at the row's first pixel and these channels, `stride`
// bytes a pixel, the first `channels` of the NV*16 written.
template <int NV>
P2PHD_WIDE_CLONES void levels_row(const Conv& p, const Rows& in, const float* gain,
                                  const float* offset, int64_t channels, int64_t stride,
                                  uint8_t* out) {
  const f32x16 zero = {}, top = zero + 255.0f, magic = zero + 12582912.0f;  // 1.5 * 2^23
  for (int64_t x = 0; x < p.W; ++x) {
    const Acc<NV> s = pixel<NV>(p, in, x);
    uint8_t* o = out + x * stride;
    for (int v = 0; v < NV; ++v) {
      f32x16 t = s.v[v] * *reinterpret_cast<const f32x16*>(gain + v * kLanes) +
                 *reinterpret_cast<const f32x16*>(offset + v * kLanes);
      t = t > zero ? t : zero;  // NaN fails the comparison: 0
      t = t < top ? t : top;
      t = (t + magic) - magic;  // round to nearest, ties to even
      const u8x16 q = __builtin_convertvector(__builtin_convertvector(t, i32x16), u8x16);
      if ((v + 1) * kLanes <= channels) {
        *reinterpret_cast<u8x16*>(o + v * kLanes) = q;
      } else {
        for (int64_t c = v * kLanes; c < channels; ++c) o[c] = q[c - v * kLanes];
      }
    }
  }
}

using ConvRowFn = void (*)(const Conv&, const Rows&, int64_t, f32x16*, float*);
constexpr ConvRowFn kConvRows[kMaxVectors + 1] = {nullptr, conv_row<1>, conv_row<2>, conv_row<3>,
                                                  conv_row<4>};
using MomentsRowFn = void (*)(const Conv&, const Rows&, float*, float*);
constexpr MomentsRowFn kMomentsRows[kMaxVectors + 1] = {nullptr, moments_row<1>, moments_row<2>,
                                                        moments_row<3>, moments_row<4>};
using LevelsRowFn = void (*)(const Conv&, const Rows&, const float*, const float*, int64_t,
                             int64_t, uint8_t*);
constexpr LevelsRowFn kLevelsRows[kMaxVectors + 1] = {nullptr, levels_row<1>, levels_row<2>,
                                                      levels_row<3>, levels_row<4>};

// What the passes of a convolution over a batch of label maps share: the taps summed over each
// tap row, the window flags of every input row and, where the first dense channel is binary
// (an instance boundary map) and K <= kMaxPatternTaps, its window patterns and their table.
class LabelConv {
 public:
  LabelConv(const float* x, const uint8_t* labels, int64_t B, int64_t C, int64_t H, int64_t W,
            int label_nc, int K, int64_t Co, const float* taps, const float* bias)
      : x_(x), labels_(labels), C_(C), H_(H), W_(W), label_nc_(label_nc), K_(K), Co_(Co),
        taps_(taps), bias_(bias), rows_((size_t)K * C * Co, 0.0f), flags_((size_t)(B * H * W)) {
    for (int dy = 0; dy < K; ++dy)
      for (int dx = 0; dx < K; ++dx)
        for (int64_t i = 0; i < C * Co; ++i) rows_[dy * C * Co + i] += taps[(dy * K + dx) * C * Co + i];
    const int64_t D = C - label_nc, plane = H * W;
    const bool patterns = D > 0 && K <= kMaxPatternTaps;
    if (patterns) window_patterns_.resize((size_t)(B * H * W));
    std::atomic<bool> binary{patterns};
    parallel_for(B * H, [&](int64_t r, int) {
      const int64_t b = r / H, y = r % H;
      const float* dense = x + (b * C + label_nc) * plane + y * W;
      window_flags(labels + r * W, dense, D, plane, W, K, flags_.data() + r * W);
      if (patterns && !window_patterns(dense, W, K, window_patterns_.data() + r * W))
        binary.store(false, std::memory_order_relaxed);
    });
    if (!binary.load()) {
      window_patterns_ = {};
      return;
    }
    pattern_rows_.assign(((size_t)K << K) * Co, 0.0f);
    for (int dy = 0; dy < K; ++dy)
      for (int pattern = 1; pattern < (1 << K); ++pattern)
        for (int dx = 0; dx < K; ++dx)
          if (pattern >> dx & 1)
            for (int64_t i = 0; i < Co; ++i)
              pattern_rows_[(((size_t)dy << K) + pattern) * Co + i] +=
                  taps[((dy * K + dx) * C + label_nc) * Co + i];
  }

  // The pass over output channels c0 .. c0 + 16 * vectors(c0) - 1.
  int vectors(int64_t c0) const { return (int)std::min<int64_t>(kMaxVectors, (Co_ - c0) / kLanes); }
  Conv pass(int64_t c0) const {
    return {C_ - label_nc_, H_ * W_, W_, K_, label_nc_, C_, Co_, taps_ + c0, rows_.data() + c0,
            bias_ + c0, pattern_rows_.empty() ? nullptr : pattern_rows_.data() + c0};
  }

  // The input rows of output row y of image b.
  Rows rows(int64_t b, int64_t y) const {
    Rows in;
    const int64_t plane = H_ * W_;
    for (int dy = 0; dy < K_; ++dy) {
      const int64_t row = reflect(y + dy - K_ / 2, H_);
      in.labels[dy] = labels_ + (b * H_ + row) * W_;
      in.dense[dy] = x_ + (b * C_ + label_nc_) * plane + row * W_;
      in.flags[dy] = flags_.data() + (b * H_ + row) * W_;
      in.patterns[dy] = window_patterns_.empty() ? nullptr : window_patterns_.data() + (b * H_ + row) * W_;
    }
    return in;
  }

 private:
  const float* x_;
  const uint8_t* labels_;
  int64_t C_, H_, W_;
  int label_nc_, K_;
  int64_t Co_;
  const float* taps_;
  const float* bias_;
  std::vector<float> rows_;
  std::vector<uint8_t> flags_;
  std::vector<uint8_t> window_patterns_;
  std::vector<float> pattern_rows_;
};

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
  const LabelConv conv(x, labels, B, C, H, W, label_nc, K, Co, taps, bias);
  const size_t tile_vectors = (size_t)((W + kLanes - 1) / kLanes * kMaxVectors * kLanes);
  std::vector<std::vector<float>> tiles(kernel_threads(), std::vector<float>(tile_vectors * kLanes));
  parallel_for(B * H, [&](int64_t r, int worker) {
    const int64_t b = r / H, y = r % H;
    const Rows in = conv.rows(b, y);
    for (int64_t c0 = 0; c0 < Co; c0 += kMaxVectors * kLanes) {
      kConvRows[conv.vectors(c0)](conv.pass(c0), in, co_out - c0,
                                  reinterpret_cast<f32x16*>(tiles[worker].data()),
                                  out + ((b * co_out + c0) * H + y) * W);
    }
  });
}

void one_hot_conv_levels(const float* x, const uint8_t* labels, int64_t B, int64_t C, int64_t H,
                         int64_t W, int label_nc, int K, int64_t Co, const float* taps,
                         const float* bias, int64_t co_out, double eps, const float* scale,
                         const float* shift, double step, uint8_t* out) {
  const LabelConv conv(x, labels, B, C, H, W, label_nc, K, Co, taps, bias);
  // First pass: per output row and channel, the sum (less the bias) and the sum of squares.
  std::vector<float> moments((size_t)(B * H * 2 * Co));
  parallel_for(B * H, [&](int64_t r, int) {
    const int64_t b = r / H, y = r % H;
    float* sums = moments.data() + r * 2 * Co;
    for (int64_t c0 = 0; c0 < Co; c0 += kMaxVectors * kLanes)
      kMomentsRows[conv.vectors(c0)](conv.pass(c0), conv.rows(b, y), sums + c0, sums + Co + c0);
  });
  // Per image and channel, from the rows' moments summed in double: the normalisation, its
  // scale and shift and the quantisation step as one gain and offset on the convolution.
  std::vector<float> gain((size_t)(B * Co), 0.0f), offset((size_t)(B * Co), 0.0f);
  const double n = (double)(H * W);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < co_out; ++c) {
      double sum = 0.0, square = 0.0;
      for (int64_t y = 0; y < H; ++y) {
        sum += moments[(b * H + y) * 2 * Co + c];
        square += moments[((b * H + y) * 2 + 1) * Co + c];
      }
      const double mean = sum / n, variance = std::max(0.0, square / n - mean * mean);
      const double g = scale[c] / std::sqrt(variance + eps);
      gain[b * Co + c] = (float)(g / step);
      offset[b * Co + c] = (float)((shift[c] - (mean + bias[c]) * g) / step);
    }
  }
  // Second pass: the convolution again, as levels.
  parallel_for(B * H, [&](int64_t r, int) {
    const int64_t b = r / H, y = r % H;
    const Rows in = conv.rows(b, y);
    for (int64_t c0 = 0; c0 < Co; c0 += kMaxVectors * kLanes) {
      kLevelsRows[conv.vectors(c0)](conv.pass(c0), in, gain.data() + b * Co + c0,
                                    offset.data() + b * Co + c0, co_out - c0, co_out,
                                    out + r * W * co_out + c0);
    }
  });
}

}  // namespace p2phd::cpu
