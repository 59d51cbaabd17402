// Per-element arithmetic of the p2phd kernels, shared by the CPU (C++17) and CUDA builds.
//
// Everything here is a small inline function marked P2PHD_HD, which is `__host__ __device__`
// under nvcc and NVRTC and plain `inline` for the host compiler, so the CPU tests check exactly the
// arithmetic the GPU runs (bit-exact: no fused multiply-add opportunity, IEEE float only).
#pragma once

#ifdef __CUDACC_RTC__
// NVRTC (engine/kernels/cuda.py compiles the kernels at first use) has no C library headers.
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
#else
#include <stdint.h>
#include <string.h>
#endif

#ifdef __CUDACC__
#define P2PHD_HD __host__ __device__ __forceinline__
#else
#define P2PHD_HD inline
#endif

namespace p2phd {

// Element types of the generator input/output tensors (values match the Python wrappers).
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

P2PHD_HD uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

P2PHD_HD float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// IEEE binary16 -> float (exact; NaN payload kept, subnormals handled).
P2PHD_HD float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    const float v = (float)man * 5.9604644775390625e-08f;  // man * 2^-24, exact
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

// float -> IEEE binary16, round to nearest even, overflow to inf, NaN to quiet NaN (as NumPy).
P2PHD_HD uint16_t float_to_half(float f) {
  uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  if (u >= 0x47800000u) {  // >= 65536: inf, or NaN
    return (uint16_t)(sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u));
  }
  if (u < 0x38800000u) {  // below 2^-14: the result is subnormal or zero
    // Adding 0.5 aligns the 10 mantissa bits at the bottom; the float add rounds to even.
    const float aligned = bits_float(u) + 0.5f;
    return (uint16_t)(sign | (float_bits(aligned) - 0x3f000000u));
  }
  const uint32_t mant_odd = (u >> 13) & 1u;
  u += 0xc8000fffu + mant_odd;  // rebias the exponent (-112 << 23) and round to nearest even
  return (uint16_t)(sign | (u >> 13));
}

P2PHD_HD float bf16_to_float(uint16_t h) { return bits_float((uint32_t)h << 16); }

// float -> bfloat16, round to nearest even, NaN to quiet NaN (as ml_dtypes).
P2PHD_HD uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The storage of one element of a tensor of element type DT.
template <int DT>
struct Storage {
  using type = uint16_t;
};
template <>
struct Storage<kFloat32> {
  using type = float;
};

template <int DT>
P2PHD_HD typename Storage<DT>::type encode(float v) {
  if constexpr (DT == kFloat32) {
    return v;
  } else if constexpr (DT == kFloat16) {
    return float_to_half(v);
  } else {
    return float_to_bf16(v);
  }
}

template <int DT>
P2PHD_HD float decode(typename Storage<DT>::type v) {
  if constexpr (DT == kFloat32) {
    return v;
  } else if constexpr (DT == kFloat16) {
    return half_to_float(v);
  } else {
    return bf16_to_float(v);
  }
}

// The 4-neighbour boundary rule: 1 where any neighbour has another instance id. A caller passes
// the pixel's own id for a neighbour outside the image.
P2PHD_HD uint8_t boundary(int32_t self, int32_t left, int32_t right, int32_t up, int32_t down) {
  return (uint8_t)((self != left) | (self != right) | (self != up) | (self != down));
}

// Instance mean from a sum and a pixel count; an instance with no pixels has mean 0.
P2PHD_HD float instance_mean(double sum, double count) {
  return count > 0.0 ? (float)(sum / count) : 0.0f;
}

// Generator output (tanh range) -> 8-bit colour: clamp(round_half_up((x + 1) * 127.5), 0, 255),
// NaN -> 0. The original pix2pixHD (util.tensor2im) truncated instead of rounding, which darkens
// every value by half a step on average.
P2PHD_HD uint8_t to_uint8(float x) {
  float v = (x + 1.0f) * 127.5f;
  v = v > 0.0f ? v : 0.0f;      // negatives, -inf and NaN -> 0
  v = v < 255.0f ? v : 255.0f;  // saturate (+inf too)
  const int r = (int)v;         // floor, as 0 <= v <= 255; v - r is then exact
  return (uint8_t)(r + (v - (float)r >= 0.5f ? 1 : 0));
}

}  // namespace p2phd
