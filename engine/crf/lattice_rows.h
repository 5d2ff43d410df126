// Rows of C floats held in registers, for the lattice filter and the CRF's
// mean field (both compiled with the same flags, see engine/CMakeLists.txt).
#ifndef PRIMAPS_ENGINE_CRF_LATTICE_ROWS_H_
#define PRIMAPS_ENGINE_CRF_LATTICE_ROWS_H_

#include <cstring>
#include <type_traits>

namespace primaps {

// A row of C floats held in registers, C > 0 fixed at compile time: as
// 8-float vectors where the target has them and C allows, else 4-float
// vectors, else single floats. Rows loaded once stay in registers, and sums
// kept here do not round-trip through memory (a row in memory makes each
// add wait on the previous store, and the compiler must reload a source row
// after every store that might alias it). Each operation is the scalar
// arithmetic lane by lane (multiply, then add: no fused multiply-add).
template <int C>
struct RowRegs {
  typedef float V8 __attribute__((vector_size(32)));
  typedef float V4 __attribute__((vector_size(16)));
#if defined(__AVX__)
  static constexpr bool kWide = C % 8 == 0;
#else
  static constexpr bool kWide = false;
#endif
  static constexpr int kWidth = kWide ? 8 : (C % 4 == 0 ? 4 : 1);
  using V = std::conditional_t<kWidth == 8, V8,
                               std::conditional_t<kWidth == 4, V4, float>>;
  static constexpr int kCount = C / kWidth;
  V v[kCount];

  static RowRegs Load(const float* p) {
    RowRegs row;
    for (int i = 0; i < kCount; ++i)
      std::memcpy(&row.v[i], p + i * kWidth, sizeof(V));
    return row;
  }
  void Store(float* p) const {
    for (int i = 0; i < kCount; ++i)
      std::memcpy(p + i * kWidth, &v[i], sizeof(V));
  }
  // w * row.
  static RowRegs Scaled(float w, const RowRegs& row) {
    RowRegs out;
    for (int i = 0; i < kCount; ++i) out.v[i] = w * row.v[i];
    return out;
  }
  // this + w * row.
  RowRegs PlusScaled(float w, const RowRegs& row) const {
    RowRegs out;
    for (int i = 0; i < kCount; ++i) out.v[i] = v[i] + w * row.v[i];
    return out;
  }
  // this + 0.5 * (a + b).
  RowRegs PlusHalfSum(const RowRegs& a, const RowRegs& b) const {
    RowRegs out;
    for (int i = 0; i < kCount; ++i) out.v[i] = v[i] + 0.5f * (a.v[i] + b.v[i]);
    return out;
  }
};

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CRF_LATTICE_ROWS_H_
