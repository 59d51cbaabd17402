// CPU kernels of p2phd (see kernels_cpu.h). Pixel loops are row-parallel (OpenMP) and
// vectorisable; per-instance work is done per run of equal ids in a row, never per instance.
#include "kernels_cpu.h"

#include <omp.h>

#include <algorithm>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernel_math.h"

// Hot row loops get an AVX2 clone next to the baseline x86-64 one, picked at load time, so the
// library stays portable to any x86-64 machine.
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define P2PHD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef P2PHD_CLONES
#define P2PHD_CLONES
#endif

namespace p2phd::cpu {
namespace {

// Rows are handed out dynamically in small tasks, so a thread that the OS preempts (a busy
// machine) does not hold the others at the end of a loop.
constexpr int kRowsPerTask = 8;

// Open-addressing map from a non-negative instance id to its index in order of insertion.
class IdMap {
 public:
  IdMap() { resize(64); }

  // The index of `key`, inserting it (with the pixel where it first appears) when new.
  int32_t find_or_insert(int32_t key, int64_t first_pixel) {
    for (size_t slot = hash(key);; slot = (slot + 1) & mask_) {
      if (keys_[slot] == key) return values_[slot];
      if (keys_[slot] < 0) {
        const int32_t index = (int32_t)order_.size();
        keys_[slot] = key;
        values_[slot] = index;
        order_.push_back(key);
        first_pixel_.push_back(first_pixel);
        if (order_.size() * 2 > keys_.size()) resize(keys_.size() * 2);
        return index;
      }
    }
  }

  const std::vector<int32_t>& keys() const { return order_; }
  const std::vector<int64_t>& first_pixels() const { return first_pixel_; }

 private:
  size_t hash(int32_t key) const { return ((uint32_t)key * 2654435761u) & mask_; }

  void resize(size_t capacity) {
    keys_.assign(capacity, -1);
    values_.assign(capacity, 0);
    mask_ = capacity - 1;
    for (size_t i = 0; i < order_.size(); ++i) {
      size_t slot = hash(order_[i]);
      while (keys_[slot] >= 0) slot = (slot + 1) & mask_;
      keys_[slot] = order_[i];
      values_[slot] = (int32_t)i;
    }
  }

  std::vector<int32_t> keys_, values_, order_;
  std::vector<int64_t> first_pixel_;
  size_t mask_ = 0;
};

// A band of rows of one image, compacted on its own first and then merged in raster order.
struct Band {
  int64_t image, row_begin, row_end;
  IdMap local;
  std::vector<int32_t> to_global;
  bool identity = true;
  int64_t negative_at = -1;
};

// Calls f(id, x, length) for each run of equal ids in a row.
template <typename F>
inline void for_each_run(const int32_t* row, int64_t width, F&& f) {
  int64_t x = 0;
  while (x < width) {
    const int32_t id = row[x];
    int64_t end = x + 1;
    while (end < width && row[end] == id) ++end;
    f(id, x, end - x);
    x = end;
  }
}

#if defined(__SSE2__)
// Splats the bits of one element across a 128-bit register.
template <typename S>
inline __m128i splat(S value);
template <>
inline __m128i splat(float value) {
  return _mm_castps_si128(_mm_set1_ps(value));
}
template <>
inline __m128i splat(uint16_t value) {
  return _mm_set1_epi16((short)value);
}

// The first index from which `out + i` is 16-byte aligned (or n).
template <typename S>
inline int64_t aligned_from(const S* out, int64_t n) {
  const int64_t misaligned = (int64_t)(reinterpret_cast<uintptr_t>(out) & 15);
  return std::min<int64_t>(n, ((16 - misaligned) & 15) / (int64_t)sizeof(S));
}
#endif

// Orders this thread's non-temporal stores before the loop's closing barrier.
inline void store_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// dst[0:n] = src[0:n] with non-temporal stores: the generator input is far larger than the
// caches, so bypassing them saves the read-for-ownership of every line (about 2x bandwidth).
// Rows are built in a small buffer first, as partial-line streaming stores are slow.
template <typename S>
inline void stream_row(S* dst, const S* src, int64_t n) {
  int64_t x = 0;
#if defined(__SSE2__)
  x = aligned_from(dst, n);
  std::copy(src, src + x, dst);
  for (; x + (int64_t)(16 / sizeof(S)) <= n; x += 16 / sizeof(S)) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + x),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + x)));
  }
#endif
  std::copy(src + x, src + n, dst + x);
}

// One row of the boundary rule; `up`/`down` are the row itself at the image border.
template <typename S, typename Encode>
inline void boundary_row(const int32_t* row, const int32_t* up, const int32_t* down, int64_t width,
                         S* out, Encode encode_edge) {
  if (width <= 0) return;
  if (width == 1) {
    out[0] = encode_edge(boundary(row[0], row[0], row[0], up[0], down[0]));
    return;
  }
  out[0] = encode_edge(boundary(row[0], row[0], row[1], up[0], down[0]));
  for (int64_t x = 1; x < width - 1; ++x) {
    out[x] = encode_edge(boundary(row[x], row[x - 1], row[x + 1], up[x], down[x]));
  }
  const int64_t l = width - 1;
  out[l] = encode_edge(boundary(row[l], row[l - 1], row[l], up[l], down[l]));
}

// The one-hot channels of one row: label_nc plane rows, each element written once, with
// non-temporal stores (see fill). `zero` is all-zero bits in every element type.
template <typename S>
P2PHD_CLONES void one_hot_row(const uint8_t* labels, int64_t width, int label_nc, S* out,
                              int64_t plane, S one, S zero) {
  for (int c = 0; c < label_nc; ++c) {
    S* d = out + c * plane;
    int64_t x = 0;
#if defined(__SSE2__)
    const int64_t head = aligned_from(d, width);
    for (; x < head; ++x) d[x] = (int)labels[x] == c ? one : zero;
    const __m128i label = _mm_set1_epi8((char)c), bits = splat(one);
    for (; x + 16 <= width; x += 16) {
      const __m128i hit = _mm_cmpeq_epi8(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(labels + x)), label);
      const __m128i lo = _mm_unpacklo_epi8(hit, hit), hi = _mm_unpackhi_epi8(hit, hit);
      __m128i* o = reinterpret_cast<__m128i*>(d + x);
      if constexpr (sizeof(S) == 2) {
        _mm_stream_si128(o, _mm_and_si128(lo, bits));
        _mm_stream_si128(o + 1, _mm_and_si128(hi, bits));
      } else {
        _mm_stream_si128(o, _mm_and_si128(_mm_unpacklo_epi16(lo, lo), bits));
        _mm_stream_si128(o + 1, _mm_and_si128(_mm_unpackhi_epi16(lo, lo), bits));
        _mm_stream_si128(o + 2, _mm_and_si128(_mm_unpacklo_epi16(hi, hi), bits));
        _mm_stream_si128(o + 3, _mm_and_si128(_mm_unpackhi_epi16(hi, hi), bits));
      }
    }
#endif
    for (; x < width; ++x) d[x] = (int)labels[x] == c ? one : zero;
  }
}

// One row of RGB from three planes of generator output.
template <int DT>
P2PHD_CLONES void rgb_row(const typename Storage<DT>::type* red, int64_t plane, int64_t width,
                          uint8_t* out) {
  const auto* green = red + plane;
  const auto* blue = green + plane;
  for (int64_t x = 0; x < width; ++x) {
    out[3 * x] = to_uint8(decode<DT>(red[x]));
    out[3 * x + 1] = to_uint8(decode<DT>(green[x]));
    out[3 * x + 2] = to_uint8(decode<DT>(blue[x]));
  }
}

template <int DT>
AssembleStatus assemble(const uint8_t* labels, const int32_t* ids, const float* table, int64_t B,
                        int64_t H, int64_t W, int label_nc, bool edges, int64_t feat, int64_t kmax,
                        void* out) {
  using S = typename Storage<DT>::type;
  const S one = encode<DT>(1.0f), zero = encode<DT>(0.0f);
  const int64_t plane = H * W, channels = label_nc + (edges ? 1 : 0) + feat;
  const int64_t feat0 = label_nc + (edges ? 1 : 0);
  bool bad_label = false, bad_id = false;
#pragma omp parallel reduction(|| : bad_label, bad_id)
  {
    std::vector<S> buffer(W * std::max<int64_t>(1, feat));  // rows built before streaming
#pragma omp for schedule(dynamic, kRowsPerTask)
    for (int64_t r = 0; r < B * H; ++r) {
      const int64_t b = r / H, y = r % H;
      const uint8_t* lab = labels + r * W;
      S* img = static_cast<S*>(out) + b * channels * plane + y * W;
      int max_label = 0;
      for (int64_t x = 0; x < W; ++x) max_label = std::max<int>(max_label, lab[x]);
      bad_label = bad_label || max_label >= label_nc;
      one_hot_row(lab, W, label_nc, img, plane, one, zero);
      const int32_t* row = ids ? ids + r * W : nullptr;
      if (edges) {
        const int32_t* up = y > 0 ? row - W : row;
        const int32_t* down = y + 1 < H ? row + W : row;
        boundary_row(row, up, down, W, buffer.data(),
                     [one, zero](uint8_t e) { return e ? one : zero; });
        stream_row(img + label_nc * plane, buffer.data(), W);
      }
      if (feat > 0 && table) {
        for_each_run(row, W, [&](int32_t id, int64_t x, int64_t n) {
          const bool valid = id >= 0 && id < kmax;
          bad_id = bad_id || !valid;
          const float* values = table + ((b * kmax) + (valid ? id : 0)) * feat;
          for (int64_t f = 0; f < feat; ++f) {
            std::fill_n(buffer.data() + f * W + x, n, encode<DT>(values[f]));
          }
        });
      } else if (feat > 0) {
        std::fill_n(buffer.data(), W, zero);
      }
      for (int64_t f = 0; f < feat; ++f) {
        stream_row(img + (feat0 + f) * plane, buffer.data() + (table ? f * W : 0), W);
      }
      store_fence();
    }
  }
  return AssembleStatus{bad_label, bad_id};
}

template <int DT>
void to_rgb(const void* output, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  using S = typename Storage<DT>::type;
  const int64_t plane = H * W;
#pragma omp parallel for schedule(dynamic, kRowsPerTask)
  for (int64_t r = 0; r < B * H; ++r) {
    const int64_t b = r / H, y = r % H;
    rgb_row<DT>(static_cast<const S*>(output) + b * 3 * plane + y * W, plane, W, rgb + r * W * 3);
  }
}

}  // namespace

template <typename T>
Compaction compact_instances(const T* instances, const uint8_t* labels, int64_t B, int64_t H,
                             int64_t W, int32_t* ids) {
  const int64_t per_image = std::max<int64_t>(1, std::min<int64_t>(H, omp_get_max_threads()));
  std::vector<Band> bands;
  bands.reserve(B * per_image);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < per_image; ++k) {
      bands.push_back(Band{b, H * k / per_image, H * (k + 1) / per_image, IdMap(), {}, true, -1});
    }
  }
  const int64_t n_bands = (int64_t)bands.size();

  // 1. Each band numbers its ids locally, in raster order (runs of one id cost one compare).
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < n_bands; ++i) {
    Band& band = bands[i];
    const int64_t begin = (band.image * H + band.row_begin) * W;
    const int64_t end = (band.image * H + band.row_end) * W;
    int32_t last_key = -1, last_index = -1;
    for (int64_t p = begin; p < end; ++p) {
      const int32_t key = (int32_t)instances[p];
      if (key != last_key) {
        if (key < 0) {
          band.negative_at = p;
          break;
        }
        last_index = band.local.find_or_insert(key, p);
        last_key = key;
      }
      ids[p] = last_index;
    }
  }

  Compaction result;
  for (const Band& band : bands) {
    if (band.negative_at >= 0) {
      result.negative_at = band.negative_at;
      return result;
    }
  }

  // 2. Merge the bands of each image in order: first appearance in the image's raster order.
  result.original.resize(B);
  result.classes.resize(B);
  for (int64_t b = 0; b < B; ++b) {
    IdMap global;
    for (Band& band : bands) {
      if (band.image != b) continue;
      const auto& keys = band.local.keys();
      const auto& firsts = band.local.first_pixels();
      band.to_global.resize(keys.size());
      for (size_t j = 0; j < keys.size(); ++j) {
        band.to_global[j] = global.find_or_insert(keys[j], firsts[j]);
        band.identity = band.identity && band.to_global[j] == (int32_t)j;
      }
    }
    result.original[b] = global.keys();
    for (int64_t p : global.first_pixels()) result.classes[b].push_back(labels[p]);
  }

  // 3. Renumber the bands whose local numbering differs from the image's.
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < n_bands; ++i) {
    const Band& band = bands[i];
    if (band.identity) continue;
    const int32_t* map = band.to_global.data();
    const int64_t begin = (band.image * H + band.row_begin) * W;
    const int64_t end = (band.image * H + band.row_end) * W;
    for (int64_t p = begin; p < end; ++p) ids[p] = map[ids[p]];
  }
  return result;
}

template Compaction compact_instances<int32_t>(const int32_t*, const uint8_t*, int64_t, int64_t,
                                               int64_t, int32_t*);
template Compaction compact_instances<uint16_t>(const uint16_t*, const uint8_t*, int64_t, int64_t,
                                                int64_t, int32_t*);

void instance_boundaries(const int32_t* ids, int64_t B, int64_t H, int64_t W, uint8_t* out) {
#pragma omp parallel for schedule(dynamic, kRowsPerTask)
  for (int64_t r = 0; r < B * H; ++r) {
    const int64_t y = r % H;
    const int32_t* row = ids + r * W;
    boundary_row(row, y > 0 ? row - W : row, y + 1 < H ? row + W : row, W, out + r * W,
                 [](uint8_t e) { return e; });
  }
}

bool instance_pool(const float* features, const int32_t* ids, int64_t B, int64_t C, int64_t H,
                   int64_t W, int64_t kmax, float* means, float* broadcast) {
  const int threads = omp_get_max_threads();
  const int64_t plane = H * W;
  bool bad = false;
  std::vector<double> sums, counts;
  for (int64_t b = 0; b < B; ++b) {
    // Segmented reduction: each thread sums the runs of its rows into its own table.
    sums.assign((size_t)threads * kmax * C, 0.0);
    counts.assign((size_t)threads * kmax, 0.0);
    const float* image = features + b * C * plane;
#pragma omp parallel for schedule(dynamic, kRowsPerTask) reduction(|| : bad)
    for (int64_t y = 0; y < H; ++y) {
      const int t = omp_get_thread_num();
      double* sum = sums.data() + (size_t)t * kmax * C;
      double* count = counts.data() + (size_t)t * kmax;
      for_each_run(ids + (b * H + y) * W, W, [&](int32_t id, int64_t x, int64_t n) {
        if (id < 0 || id >= kmax) {
          bad = true;
          return;
        }
        count[id] += (double)n;
        for (int64_t c = 0; c < C; ++c) {
          const float* p = image + c * plane + y * W + x;
          double s = 0.0;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < n; ++i) s += p[i];
          sum[id * C + c] += s;
        }
      });
    }
    if (bad) return false;
    for (int t = 1; t < threads; ++t) {
      for (int64_t k = 0; k < kmax; ++k) {
        counts[k] += counts[(size_t)t * kmax + k];
        for (int64_t c = 0; c < C; ++c) sums[k * C + c] += sums[((size_t)t * kmax + k) * C + c];
      }
    }
    float* mean = means + b * kmax * C;
    for (int64_t k = 0; k < kmax; ++k) {
      for (int64_t c = 0; c < C; ++c) mean[k * C + c] = instance_mean(sums[k * C + c], counts[k]);
    }
    if (!broadcast) continue;
#pragma omp parallel
    {
      std::vector<float> buffer(C * W);  // rows built before streaming
#pragma omp for schedule(dynamic, kRowsPerTask)
      for (int64_t y = 0; y < H; ++y) {
        for_each_run(ids + (b * H + y) * W, W, [&](int32_t id, int64_t x, int64_t n) {
          for (int64_t c = 0; c < C; ++c) {
            std::fill_n(buffer.data() + c * W + x, n, mean[id * C + c]);
          }
        });
        for (int64_t c = 0; c < C; ++c) {
          stream_row(broadcast + (b * C + c) * plane + y * W, buffer.data() + c * W, W);
        }
        store_fence();
      }
    }
  }
  return true;
}

AssembleStatus assemble_input(const uint8_t* labels, const int32_t* ids, const float* table,
                              int64_t B, int64_t H, int64_t W, int label_nc, bool edges,
                              int64_t feat, int64_t kmax, int dtype, void* out) {
  switch (dtype) {
    case kFloat16:
      return assemble<kFloat16>(labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out);
    case kBFloat16:
      return assemble<kBFloat16>(labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out);
    default:
      return assemble<kFloat32>(labels, ids, table, B, H, W, label_nc, edges, feat, kmax, out);
  }
}

void to_uint8_rgb(const void* output, int dtype, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  switch (dtype) {
    case kFloat16:
      return to_rgb<kFloat16>(output, B, H, W, rgb);
    case kBFloat16:
      return to_rgb<kBFloat16>(output, B, H, W, rgb);
    default:
      return to_rgb<kFloat32>(output, B, H, W, rgb);
  }
}

}  // namespace p2phd::cpu
