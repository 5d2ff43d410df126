// Vectors of kLanes floats or int32s for the numeric kernels (dense CRF,
// permutohedral lattice), written with the GCC/Clang vector extensions: one
// pixel or point per lane, arithmetic with the ordinary operators,
// comparisons giving int32 masks (all ones where true). kLanes is the width
// of the target's float registers: 8 where the kernels are compiled for
// AVX2 (PRIMAPS_AVX2, see engine/CMakeLists.txt), 4 (SSE2) otherwise. Each
// lane's arithmetic is the same IEEE operations at either width (no fused
// multiply-add: the kernels build with -ffp-contract=off), so results do not
// depend on it.
#ifndef PRIMAPS_ENGINE_SIMD_LANES_H_
#define PRIMAPS_ENGINE_SIMD_LANES_H_

#include <cstdint>

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

}  // namespace simd
}  // namespace primaps

#endif  // PRIMAPS_ENGINE_SIMD_LANES_H_
