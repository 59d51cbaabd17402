// CPU kernels of p2phd (see kernels_cpu.h). Pixel loops are row-parallel (task_pool.h) and
// vectorisable; per-instance work is done per run of equal ids in a row, never per instance.
#include "kernels_cpu.h"

#include <algorithm>
#include <atomic>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernel_math.h"
#include "task_pool.h"

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

// Rows are handed out in small tasks, so the threads that run balance each other.
constexpr int64_t kRowsPerTask = 8;

// Runs fn(row, worker) for every row in [0, rows), in parallel (see parallel_for).
template <typename F>
void for_rows(int64_t rows, F&& fn) {
  parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int worker) {
    const int64_t end = std::min(rows, (task + 1) * kRowsPerTask);
    for (int64_t r = task * kRowsPerTask; r < end; ++r) fn(r, worker);
  });
}

// One scratch row buffer of `size` elements per worker.
template <typename S>
std::vector<std::vector<S>> scratch(int64_t size) {
  return std::vector<std::vector<S>>(kernel_threads(), std::vector<S>(size));
}

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
  // Fibonacci hashing: the top bits of the product, so ids that differ only in high bits
  // (multiples of 65536, say) still spread over the table.
  size_t hash(int32_t key) const { return ((uint32_t)key * 2654435769u) >> shift_; }

  void resize(size_t capacity) {
    keys_.assign(capacity, -1);
    values_.assign(capacity, 0);
    mask_ = capacity - 1;
    shift_ = 32;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
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
  int shift_ = 32;
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

// Adds each run of one row to its instance's sums [kmax, C] and pixel count; features holds C
// planes `plane` apart. False when an id is outside [0, kmax) (its run is skipped).
P2PHD_CLONES bool sum_row(const int32_t* ids, int64_t width, const float* features, int64_t C,
                          int64_t plane, int64_t kmax, double* sum, double* count) {
  bool valid = true;
  for_each_run(ids, width, [&](int32_t id, int64_t x, int64_t n) {
    if (id < 0 || id >= kmax) {
      valid = false;
      return;
    }
    count[id] += (double)n;
    for (int64_t c = 0; c < C; ++c) {
      const float* p = features + c * plane + x;
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; ++i) s += p[i];
      sum[id * C + c] += s;
    }
  });
  return valid;
}

// One row of the broadcast map: each pixel of C planes `plane` apart gets its instance's mean.
P2PHD_CLONES void broadcast_row(const int32_t* ids, int64_t width, const float* means, int64_t C,
                                int64_t plane, float* map) {
  for_each_run(ids, width, [&](int32_t id, int64_t x, int64_t n) {
    for (int64_t c = 0; c < C; ++c) std::fill_n(map + c * plane + x, n, means[id * C + c]);
  });
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
                        int64_t H, int64_t W, int label_nc, bool one_hot, bool edges, int64_t feat,
                        int64_t kmax, void* out) {
  using S = typename Storage<DT>::type;
  const S one = encode<DT>(1.0f), zero = encode<DT>(0.0f);
  const int64_t plane = H * W, channels = label_nc + (edges ? 1 : 0) + feat;
  const int64_t feat0 = label_nc + (edges ? 1 : 0);
  std::atomic<bool> bad_label{false}, bad_id{false};
  auto buffers = scratch<S>(W * std::max<int64_t>(1, feat));  // rows built before streaming
  for_rows(B * H, [&](int64_t r, int worker) {
    S* buffer = buffers[worker].data();
    const int64_t b = r / H, y = r % H;
    const uint8_t* lab = labels + r * W;
    S* img = static_cast<S*>(out) + b * channels * plane + y * W;
    int max_label = 0;
    for (int64_t x = 0; x < W; ++x) max_label = std::max<int>(max_label, lab[x]);
    if (max_label >= label_nc) bad_label.store(true, std::memory_order_relaxed);
    if (one_hot) one_hot_row(lab, W, label_nc, img, plane, one, zero);
    const int32_t* row = ids ? ids + r * W : nullptr;
    if (edges) {
      const int32_t* up = y > 0 ? row - W : row;
      const int32_t* down = y + 1 < H ? row + W : row;
      boundary_row(row, up, down, W, buffer, [one, zero](uint8_t e) { return e ? one : zero; });
      stream_row(img + label_nc * plane, buffer, W);
    }
    if (feat > 0 && table) {
      for_each_run(row, W, [&](int32_t id, int64_t x, int64_t n) {
        const bool valid = id >= 0 && id < kmax;
        if (!valid) bad_id.store(true, std::memory_order_relaxed);
        const float* values = table + ((b * kmax) + (valid ? id : 0)) * feat;
        for (int64_t f = 0; f < feat; ++f) {
          std::fill_n(buffer + f * W + x, n, encode<DT>(values[f]));
        }
      });
    } else if (feat > 0) {
      std::fill_n(buffer, W, zero);
    }
    for (int64_t f = 0; f < feat; ++f) {
      stream_row(img + (feat0 + f) * plane, buffer + (table ? f * W : 0), W);
    }
    store_fence();
  });
  return AssembleStatus{bad_label.load(), bad_id.load()};
}

template <int DT>
void to_rgb(const void* output, int64_t B, int64_t H, int64_t W, uint8_t* rgb) {
  using S = typename Storage<DT>::type;
  const int64_t plane = H * W;
  for_rows(B * H, [&](int64_t r, int) {
    const int64_t b = r / H, y = r % H;
    rgb_row<DT>(static_cast<const S*>(output) + b * 3 * plane + y * W, plane, W, rgb + r * W * 3);
  });
}

}  // namespace

template <typename T>
Compaction compact_instances(const T* instances, const uint8_t* labels, int64_t B, int64_t H,
                             int64_t W, int32_t* ids) {
  const int64_t per_image = std::max<int64_t>(1, std::min<int64_t>(H, kernel_threads()));
  std::vector<Band> bands;
  bands.reserve(B * per_image);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < per_image; ++k) {
      bands.push_back(Band{b, H * k / per_image, H * (k + 1) / per_image, IdMap(), {}, true, -1});
    }
  }
  const int64_t n_bands = (int64_t)bands.size();

  // 1. Each band numbers its ids locally, in raster order (runs of one id cost one compare).
  parallel_for(n_bands, [&](int64_t i, int) {
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
  });

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
  parallel_for(n_bands, [&](int64_t i, int) {
    const Band& band = bands[i];
    if (band.identity) return;
    const int32_t* map = band.to_global.data();
    const int64_t begin = (band.image * H + band.row_begin) * W;
    const int64_t end = (band.image * H + band.row_end) * W;
    for (int64_t p = begin; p < end; ++p) ids[p] = map[ids[p]];
  });
  return result;
}

template Compaction compact_instances<int32_t>(const int32_t*, const uint8_t*, int64_t, int64_t,
                                               int64_t, int32_t*);
template Compaction compact_instances<uint16_t>(const uint16_t*, const uint8_t*, int64_t, int64_t,
                                                int64_t, int32_t*);

void instance_boundaries(const int32_t* ids, int64_t B, int64_t H, int64_t W, uint8_t* out) {
  for_rows(B * H, [&](int64_t r, int) {
    const int64_t y = r % H;
    const int32_t* row = ids + r * W;
    boundary_row(row, y > 0 ? row - W : row, y + 1 < H ? row + W : row, W, out + r * W,
                 [](uint8_t e) { return e; });
  });
}

bool instance_pool(const float* features, const int32_t* ids, int64_t B, int64_t C, int64_t H,
                   int64_t W, int64_t kmax, float* means, float* broadcast) {
  const int64_t plane = H * W, instances = B * kmax;  // instance slots in the batch
  const size_t threads = (size_t)kernel_threads();
  std::atomic<bool> bad{false};
  // Segmented reduction: each worker sums the runs of its rows into its own table.
  std::vector<double> sums(threads * instances * C, 0.0), counts(threads * instances, 0.0);
  for_rows(B * H, [&](int64_t r, int worker) {
    const int64_t b = r / H, y = r % H;
    double* sum = sums.data() + ((size_t)worker * instances + b * kmax) * C;
    double* count = counts.data() + (size_t)worker * instances + b * kmax;
    const float* image = features + b * C * plane + y * W;
    if (!sum_row(ids + r * W, W, image, C, plane, kmax, sum, count)) {
      bad.store(true, std::memory_order_relaxed);
    }
  });
  if (bad.load()) return false;
  for (size_t t = 1; t < threads; ++t) {
    for (int64_t i = 0; i < instances; ++i) counts[i] += counts[t * instances + i];
    for (int64_t i = 0; i < instances * C; ++i) sums[i] += sums[t * instances * C + i];
  }
  for (int64_t i = 0; i < instances; ++i) {
    for (int64_t c = 0; c < C; ++c) means[i * C + c] = instance_mean(sums[i * C + c], counts[i]);
  }
  if (!broadcast) return true;
  // Plain stores: the map is a few channels, small enough for the last-level cache to absorb
  // (measured faster than streaming stores here, unlike the many-channel generator input).
  for_rows(B * H, [&](int64_t r, int) {
    const int64_t b = r / H, y = r % H;
    float* map = broadcast + b * C * plane + y * W;
    broadcast_row(ids + r * W, W, means + b * kmax * C, C, plane, map);
  });
  return true;
}

AssembleStatus assemble_input(const uint8_t* labels, const int32_t* ids, const float* table,
                              int64_t B, int64_t H, int64_t W, int label_nc, bool one_hot,
                              bool edges, int64_t feat, int64_t kmax, int dtype, void* out) {
  switch (dtype) {
    case kFloat16:
      return assemble<kFloat16>(labels, ids, table, B, H, W, label_nc, one_hot, edges, feat, kmax,
                                out);
    case kBFloat16:
      return assemble<kBFloat16>(labels, ids, table, B, H, W, label_nc, one_hot, edges, feat,
                                 kmax, out);
    default:
      return assemble<kFloat32>(labels, ids, table, B, H, W, label_nc, one_hot, edges, feat, kmax,
                                out);
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
