// Vectors of kLanes floats or int32s for the numeric kernels (dense CRF,
// permutohedral lattice), written with the GCC/Clang vector extensions: one
// pixel or point per lane, arithmetic with the ordinary operators,
// comparisons giving int32 masks (all ones where true). kLanes is the width
// of the target's float registers: 8 where the kernels are compiled for
// AVX2 (PRIMAPS_AVX2, see engine/CMakeLists.txt), 4 (SSE2) otherwise. Each
// lane's arithmetic is the same IEEE operations at either width (no fused
// multiply-add: the kernels build with -ffp-contract=off), so results do not
// depend on it.
#ifndef PRIMAPS_BASE_SIMD_LANES_H_
#define PRIMAPS_BASE_SIMD_LANES_H_

#include <cstdint>
#include <cstring>

namespace primaps {
namespace simd {

#if defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float Floats __attribute__((vector_size(4 * kLanes)));
typedef int32_t Ints __attribute__((vector_size(4 * kLanes)));

// Per lane: mask ? a : b.
inline Ints Select(Ints mask, Ints a, Ints b) {
  return (mask & a) | (~mask & b);
}
inline Floats Select(Ints mask, Floats a, Floats b) {
  return (Floats)Select(mask, (Ints)a, (Ints)b);
}

inline Floats ToFloats(Ints v) { return __builtin_convertvector(v, Floats); }
// Truncation toward zero.
inline Ints ToInts(Floats v) { return __builtin_convertvector(v, Ints); }

// {previous[kLanes - 1], current[0], ..., current[kLanes - 2]}: each lane
// gets the value of the lane before it, lane 0 the last of `previous`.
inline Ints ShiftInLast(Ints previous, Ints current) {
#if defined(__clang__)
#if defined(__AVX2__)
  return __builtin_shufflevector(previous, current, 7, 8, 9, 10, 11, 12, 13,
                                 14);
#else
  return __builtin_shufflevector(previous, current, 3, 4, 5, 6);
#endif
#else
#if defined(__AVX2__)
  return __builtin_shuffle(previous, current,
                           Ints{7, 8, 9, 10, 11, 12, 13, 14});
#else
  return __builtin_shuffle(previous, current, Ints{3, 4, 5, 6});
#endif
#endif
}

// Bit i set where lane i of `mask` is nonzero.
inline int MaskBits(Ints mask) {
  int bits = 0;
  for (int i = 0; i < kLanes; ++i) bits |= (mask[i] != 0) << i;
  return bits;
}

// kLanes floats from (to) unaligned memory.
inline Floats Load(const float* p) {
  Floats v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, Floats v) { std::memcpy(p, &v, sizeof(v)); }

// exp(x) per lane for x <= 0, to about 2 ulp (std::exp is a libm call that
// does not vectorize): x = n ln2 + r with |r| <= ln2 / 2, a degree-6
// polynomial for exp(r) (the Cephes expf coefficients), and 2^n built in
// the exponent bits.
inline Floats ExpNonPositive(Floats x) {
  // Below -87 the result would be denormal: flush to 0.
  const Floats lowest = Floats{} - 87.f;
  const Ints underflow = x < lowest;
  x = Select(underflow, lowest, x);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick.
  const Floats n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const Floats r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  Floats p = Floats{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;
  return Select(underflow, Floats{}, p * (Floats)bits);
}

}  // namespace simd
}  // namespace primaps

#endif  // PRIMAPS_BASE_SIMD_LANES_H_
