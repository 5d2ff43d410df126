#include <cmath>
#include <utility>
#include <vector>

#include "engine/crf/permutohedral_lattice.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "engine/crf/lattice_rows.h"

namespace primaps {
namespace {

// The row width C is a template parameter where it is small (kDynamic
// otherwise), so that the per-row loops compile to a few straight SIMD
// instructions instead of vectorized loops with run-time checks.
constexpr int kDynamic = 0;

// The filter's buffers in the caller's workspace: two of the lattice's
// rows, swapped after each blur axis, and one row of scratch. Only the
// splat target needs zeroing; the blur overwrites every row of the other
// except row 0, the always-zero "missing neighbour" row.
struct FilterBuffers {
  FilterBuffers(int num_vertices, int channels, std::vector<float>* workspace) {
    const size_t cells = static_cast<size_t>(num_vertices + 1) * channels;
    workspace->resize(2 * cells + channels);
    values = workspace->data();
    scratch = values + cells;
    row = scratch + cells;
    std::fill(values, values + cells, 0.f);
    std::fill(scratch, scratch + channels, 0.f);
  }
  float* values;
  float* scratch;
  float* row;
};

}  // namespace

// Blur along each axis: new = old + 0.5 * (left + right).
template <int C>
float* PermutohedralLattice::BlurInRegisters(float* values,
                                             float* scratch) const {
  using Row = RowRegs<C>;
  const int num_vertices = num_vertices_;
  for (int j = 0; j <= dim_; ++j) {
    const int32_t* nb = &neighbors_[static_cast<size_t>(j) * num_vertices * 2];
    int v = 0;
#if defined(__AVX__)
    if constexpr (C == 4) {
      // Two vertices per 8-float register: their own rows are adjacent,
      // each neighbour row fills one half.
      auto pair = [values](int32_t lo, int32_t hi) {
        return _mm256_insertf128_ps(
            _mm256_castps128_ps256(
                _mm_loadu_ps(&values[static_cast<size_t>(lo) * 4])),
            _mm_loadu_ps(&values[static_cast<size_t>(hi) * 4]), 1);
      };
      const __m256 half = _mm256_set1_ps(0.5f);
      for (; v + 2 <= num_vertices; v += 2) {
        const __m256 a = pair(nb[2 * v], nb[2 * v + 2]);
        const __m256 b = pair(nb[2 * v + 1], nb[2 * v + 3]);
        const __m256 self =
            _mm256_loadu_ps(&values[static_cast<size_t>(v + 1) * 4]);
        _mm256_storeu_ps(
            &scratch[static_cast<size_t>(v + 1) * 4],
            _mm256_add_ps(self, _mm256_mul_ps(half, _mm256_add_ps(a, b))));
      }
    }
#endif
    for (; v < num_vertices; ++v) {
      const Row a = Row::Load(&values[static_cast<size_t>(nb[2 * v]) * C]);
      const Row b = Row::Load(&values[static_cast<size_t>(nb[2 * v + 1]) * C]);
      Row::Load(&values[static_cast<size_t>(v + 1) * C])
          .PlusHalfSum(a, b)
          .Store(&scratch[static_cast<size_t>(v + 1) * C]);
    }
    std::swap(values, scratch);
  }
  return values;
}

// Fixed row width C: every row operation on registers.
template <int D1, int C>
void PermutohedralLattice::FilterInRegisters(
    const float* in, float* out, const Scaling& scaling,
    std::vector<float>* workspace) const {
  using Row = RowRegs<C>;
  const int d1 = D1 == kDynamic ? dim_ + 1 : D1;
  // Loop bounds in locals: stores through float pointers would otherwise
  // make the compiler reload them from *this on every iteration.
  const int num_points = num_points_, num_vertices = num_vertices_;
  FilterBuffers buffers(num_vertices, C, workspace);
  float* values = buffers.values;
  float* scratch = buffers.scratch;
  // Splat.
  for (int p = 0; p < num_points; ++p) {
    const Row src = Row::Load(in + static_cast<size_t>(p) * C);
    const int32_t* offsets = &offsets_[static_cast<size_t>(p) * d1];
    const float* weights = &weights_[static_cast<size_t>(p) * d1];
    const float in_scale = scaling.in_scale ? scaling.in_scale[p] : 1.f;
    for (int r = 0; r < d1; ++r) {
      float* dst = &values[static_cast<size_t>(offsets[r]) * C];
      Row::Load(dst).PlusScaled(weights[r] * in_scale, src).Store(dst);
    }
  }
  values = BlurInRegisters<C>(values, scratch);
  // Slice, each point's weighted sum in registers.
  const float alpha = slice_scale();
  for (int p = 0; p < num_points; ++p) {
    const int32_t* offsets = &offsets_[static_cast<size_t>(p) * d1];
    const float* weights = &weights_[static_cast<size_t>(p) * d1];
    Row acc =
        Row::Scaled(weights[0] * alpha,
                    Row::Load(&values[static_cast<size_t>(offsets[0]) * C]));
    for (int r = 1; r < d1; ++r) {
      acc = acc.PlusScaled(
          weights[r] * alpha,
          Row::Load(&values[static_cast<size_t>(offsets[r]) * C]));
    }
    float* dst = out + static_cast<size_t>(p) * C;
    const float out_scale =
        scaling.out_weight * (scaling.out_scale ? scaling.out_scale[p] : 1.f);
    if (scaling.accumulate) {
      Row::Load(dst).PlusScaled(out_scale, acc).Store(dst);
    } else if (scaling.base != nullptr) {
      Row::Load(scaling.base + static_cast<size_t>(p) * C)
          .PlusScaled(out_scale, acc)
          .Store(dst);
    } else {
      Row::Scaled(out_scale, acc).Store(dst);
    }
  }
}

// The same for any row width, as plain loops over the row.
float* PermutohedralLattice::BlurInLoops(float* values, float* scratch,
                                         int channels) const {
  const int num_vertices = num_vertices_;
  for (int j = 0; j <= dim_; ++j) {
    const int32_t* nb = &neighbors_[static_cast<size_t>(j) * num_vertices * 2];
    for (int v = 0; v < num_vertices; ++v) {
      const float* self = &values[static_cast<size_t>(v + 1) * channels];
      const float* a = &values[static_cast<size_t>(nb[2 * v]) * channels];
      const float* b = &values[static_cast<size_t>(nb[2 * v + 1]) * channels];
      float* dst = &scratch[static_cast<size_t>(v + 1) * channels];
      for (int c = 0; c < channels; ++c)
        dst[c] = self[c] + 0.5f * (a[c] + b[c]);
    }
    std::swap(values, scratch);
  }
  return values;
}

// Any row width: the same operations in the same order as FilterInRegisters, as
// plain loops over the row.
template <int D1>
void PermutohedralLattice::FilterInLoops(const float* in, int channels,
                                         float* out, const Scaling& scaling,
                                         std::vector<float>* workspace) const {
  const int d1 = D1 == kDynamic ? dim_ + 1 : D1;
  const int num_points = num_points_, num_vertices = num_vertices_;
  FilterBuffers buffers(num_vertices, channels, workspace);
  float* values = buffers.values;
  float* scratch = buffers.scratch;
  float* acc = buffers.row;
  for (int p = 0; p < num_points; ++p) {
    const float* src = in + static_cast<size_t>(p) * channels;
    const float in_scale = scaling.in_scale ? scaling.in_scale[p] : 1.f;
    for (int r = 0; r < d1; ++r) {
      const size_t at = static_cast<size_t>(p) * d1 + r;
      float* dst = &values[static_cast<size_t>(offsets_[at]) * channels];
      const float w = weights_[at] * in_scale;
      for (int c = 0; c < channels; ++c) dst[c] = dst[c] + w * src[c];
    }
  }
  values = BlurInLoops(values, scratch, channels);
  const float alpha = slice_scale();
  for (int p = 0; p < num_points; ++p) {
    for (int r = 0; r < d1; ++r) {
      const size_t at = static_cast<size_t>(p) * d1 + r;
      const float* src = &values[static_cast<size_t>(offsets_[at]) * channels];
      const float w = weights_[at] * alpha;
      for (int c = 0; c < channels; ++c)
        acc[c] = r == 0 ? w * src[c] : acc[c] + w * src[c];
    }
    float* dst = out + static_cast<size_t>(p) * channels;
    const float out_scale =
        scaling.out_weight * (scaling.out_scale ? scaling.out_scale[p] : 1.f);
    const float* base = scaling.accumulate ? dst
                        : scaling.base
                            ? scaling.base + static_cast<size_t>(p) * channels
                            : nullptr;
    for (int c = 0; c < channels; ++c) {
      dst[c] =
          base != nullptr ? base[c] + out_scale * acc[c] : out_scale * acc[c];
    }
  }
}

float PermutohedralLattice::slice_scale() const {
  return 1.f / (1.f + std::pow(2.f, -static_cast<float>(dim_)));
}

float* PermutohedralLattice::Blur(float* values, float* scratch,
                                  int channels) const {
  switch (channels) {
    case 4:
      return BlurInRegisters<4>(values, scratch);
    case 8:
      return BlurInRegisters<8>(values, scratch);
    case 12:
      return BlurInRegisters<12>(values, scratch);
    case 16:
      return BlurInRegisters<16>(values, scratch);
    case 24:
      return BlurInRegisters<24>(values, scratch);
    case 32:
      return BlurInRegisters<32>(values, scratch);
    default:
      return BlurInLoops(values, scratch, channels);
  }
}

void PermutohedralLattice::Filter(const float* in, int channels, float* out,
                                  std::vector<float>* workspace) const {
  FilterScaled(in, channels, out, Scaling{}, workspace);
}

void PermutohedralLattice::FilterScaled(const float* in, int channels,
                                        float* out, const Scaling& scaling,
                                        std::vector<float>* workspace) const {
  // The dense CRF's two kernels (d = 2 and 5) get their simplex size fixed
  // at compile time, so the per-point loops over its vertices unroll.
  switch (dim_) {
    case 2:
      return FilterForWidth<3>(in, channels, out, scaling, workspace);
    case 5:
      return FilterForWidth<6>(in, channels, out, scaling, workspace);
    default:
      return FilterForWidth<kDynamic>(in, channels, out, scaling, workspace);
  }
}

template <int D1>
void PermutohedralLattice::FilterForWidth(const float* in, int channels,
                                          float* out, const Scaling& scaling,
                                          std::vector<float>* workspace) const {
  switch (channels) {
    case 1:
      return FilterInRegisters<D1, 1>(in, out, scaling, workspace);
    case 2:
      return FilterInRegisters<D1, 2>(in, out, scaling, workspace);
    case 3:
      return FilterInRegisters<D1, 3>(in, out, scaling, workspace);
    case 4:
      return FilterInRegisters<D1, 4>(in, out, scaling, workspace);
    case 5:
      return FilterInRegisters<D1, 5>(in, out, scaling, workspace);
    case 6:
      return FilterInRegisters<D1, 6>(in, out, scaling, workspace);
    case 7:
      return FilterInRegisters<D1, 7>(in, out, scaling, workspace);
    case 8:
      return FilterInRegisters<D1, 8>(in, out, scaling, workspace);
    case 12:
      return FilterInRegisters<D1, 12>(in, out, scaling, workspace);
    case 16:
      return FilterInRegisters<D1, 16>(in, out, scaling, workspace);
    case 24:
      return FilterInRegisters<D1, 24>(in, out, scaling, workspace);
    case 32:
      return FilterInRegisters<D1, 32>(in, out, scaling, workspace);
    default:
      return FilterInLoops<D1>(in, channels, out, scaling, workspace);
  }
}

}  // namespace primaps
