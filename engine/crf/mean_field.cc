#include "engine/crf/mean_field.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#elif defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "absl/container/inlined_vector.h"
#include "base/simd_lanes.h"
#include "base/status_macros.h"
#include "engine/crf/lattice_rows.h"
#include "engine/crf/permutohedral_lattice.h"

namespace primaps {
namespace {

using simd::ExpNonPositive;
using simd::Floats;
using simd::kLanes;
using simd::Select;

// Rows of S floats, S a template parameter where small (0: run-time
// `stride`), so the per-row loops below compile to straight SIMD code.
template <int S>
struct Rows {
  static int Width(int stride) { return S == 0 ? stride : S; }
};

// kLanes rows of S floats (S fixed) to and from S vectors of one label each:
// a transpose in registers where the target allows it, else lane by lane.
// Lane order is free (each lane is a pixel, on its own), so the AVX2 rows
// of 4 use the in-lane transpose, and every version is its own inverse.
template <int S>
struct LabelVectors {
  static constexpr bool kRegisterTranspose =
#if defined(__AVX2__)
      S == 4 || S == 8;
#elif defined(__SSE__)
      S == 4;
#else
      false;
#endif

  // t[l] <-> label l of the kLanes rows at `rows`.
  static void Transpose(Floats* t) {
#if defined(__AVX2__)
    if constexpr (S == 4) {
      // Each register holds two rows; transpose the 4x4 blocks per half.
      const __m256 t0 = _mm256_unpacklo_ps((__m256)t[0], (__m256)t[1]);
      const __m256 t1 = _mm256_unpackhi_ps((__m256)t[0], (__m256)t[1]);
      const __m256 t2 = _mm256_unpacklo_ps((__m256)t[2], (__m256)t[3]);
      const __m256 t3 = _mm256_unpackhi_ps((__m256)t[2], (__m256)t[3]);
      t[0] = (Floats)_mm256_shuffle_ps(t0, t2, 0x44);
      t[1] = (Floats)_mm256_shuffle_ps(t0, t2, 0xEE);
      t[2] = (Floats)_mm256_shuffle_ps(t1, t3, 0x44);
      t[3] = (Floats)_mm256_shuffle_ps(t1, t3, 0xEE);
    } else if constexpr (S == 8) {
      __m256 u[8], v[8];
      for (int i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps((__m256)t[i], (__m256)t[i + 1]);
        u[i + 1] = _mm256_unpackhi_ps((__m256)t[i], (__m256)t[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        v[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
        v[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
        v[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
        v[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
      }
      for (int i = 0; i < 4; ++i) {
        t[i] = (Floats)_mm256_permute2f128_ps(v[i], v[i + 4], 0x20);
        t[i + 4] = (Floats)_mm256_permute2f128_ps(v[i], v[i + 4], 0x31);
      }
    }
#elif defined(__SSE__)
    if constexpr (S == 4) {
      __m128 r0 = (__m128)t[0], r1 = (__m128)t[1], r2 = (__m128)t[2],
             r3 = (__m128)t[3];
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      t[0] = (Floats)r0;
      t[1] = (Floats)r1;
      t[2] = (Floats)r2;
      t[3] = (Floats)r3;
    }
#endif
    (void)t;
  }

  static void Load(const float* rows, Floats* t) {
    if constexpr (kRegisterTranspose) {
      for (int i = 0; i < S; ++i) t[i] = simd::Load(rows + i * kLanes);
      Transpose(t);
    } else {
      for (int l = 0; l < S; ++l) {
        for (int i = 0; i < kLanes; ++i) t[l][i] = rows[i * S + l];
      }
    }
  }

  static void Store(Floats* t, float* rows) {
    if constexpr (kRegisterTranspose) {
      Transpose(t);
      for (int i = 0; i < S; ++i) simd::Store(rows + i * kLanes, t[i]);
    } else {
      for (int l = 0; l < S; ++l) {
        for (int i = 0; i < kLanes; ++i) rows[i * S + l] = t[l][i];
      }
    }
  }
};

// The softmax of kLanes pixels, one per lane, over the first `labels` of
// t; the padding after them becomes exactly 0.
inline void SoftmaxLanes(Floats* t, int labels, int width) {
  Floats mx = t[0];
  for (int l = 1; l < labels; ++l) mx = Select(mx < t[l], t[l], mx);
  Floats total = {};
  for (int l = 0; l < labels; ++l) {
    t[l] = ExpNonPositive(t[l] - mx);
    total += t[l];
  }
  const Floats inv = (Floats{} + 1.f) / total;
  for (int l = 0; l < labels; ++l) t[l] *= inv;
  for (int l = labels; l < width; ++l) t[l] = Floats{};
}

// In place, per pixel: x = exp(x - max) / sum over the first `labels` of the
// row's values; the padding after them becomes exactly 0. Rows of a pixel
// are short, so kLanes pixels are done at once, one per SIMD lane; each
// pixel's arithmetic (the max, the exps, the sum in label order) is the
// same as one row at a time. S: the row width where fixed (0: `stride`).
template <int S>
void SoftmaxRows(float* values, int num_points, int labels, int stride) {
  const int width = Rows<S>::Width(stride);
  absl::InlinedVector<Floats, 32> t_storage(S == 0 ? width : 0);
  Floats fixed[S == 0 ? 1 : S];
  Floats* t = S == 0 ? t_storage.data() : fixed;
  int p0 = 0;
  if constexpr (S != 0) {
    for (; p0 + kLanes <= num_points; p0 += kLanes) {
      float* rows = values + static_cast<size_t>(p0) * S;
      LabelVectors<S>::Load(rows, t);
      SoftmaxLanes(t, labels, S);
      LabelVectors<S>::Store(t, rows);
    }
  }
  // Any width, and the last pixels: lane by lane (missing lanes read 0 and
  // are not written back).
  for (; p0 < num_points; p0 += kLanes) {
    const int count = std::min(kLanes, num_points - p0);
    float* rows = values + static_cast<size_t>(p0) * width;
    for (int l = 0; l < width; ++l) {
      for (int i = 0; i < kLanes; ++i)
        t[l][i] = i < count ? rows[i * width + l] : 0;
    }
    SoftmaxLanes(t, labels, width);
    for (int i = 0; i < count; ++i) {
      for (int l = 0; l < width; ++l) rows[i * width + l] = t[l][i];
    }
  }
}

// One pairwise kernel in the fused mean field (FusedMeanField): its
// lattice, normalization and weight, and two vertex buffers: the splat
// target, and the blurred values that the iteration slices. Weights and
// scales are multiplied as FilterScaled multiplies them, so the products,
// and the results, are the same floats.
template <int C, int D1>
class FusedKernel {
 public:
  using Row = RowRegs<C>;

  explicit FusedKernel(const MeanFieldKernel& kernel)
      : lattice_(*kernel.lattice),
        norm_(kernel.norm),
        weight_(kernel.weight),
        alpha_(lattice_.slice_scale()) {
    // Zero: the first splat's target, and row 0 of both buffers is the
    // blur's missing neighbour.
    cells_ = static_cast<size_t>(lattice_.num_vertices() + 1) * C;
    buffers_.assign(2 * cells_, 0.f);
    target_ = buffers_.data();
  }

  // Blurs the splatted values. The other buffer becomes the splat target,
  // zeroed when `splat_next`.
  void Blur(bool splat_next) {
    float* other =
        target_ == buffers_.data() ? target_ + cells_ : buffers_.data();
    blurred_ = lattice_.Blur(target_, other, C);
    target_ = blurred_ == target_ ? other : target_;
    if (splat_next) std::fill(target_, target_ + cells_, 0.f);
  }

  // Read by the point loops through copies in locals: stores through float
  // pointers would make the compiler reload members after each.
  struct View {
    const int32_t* rows;
    const float* weights;
    const float* norm;
    float alpha;
    float weight;
    const float* blurred;
    float* target;

    float OutScale(size_t p) const { return weight * norm[p]; }
    // The point's filtered row, before OutScale.
    Row Slice(size_t p) const {
      const int32_t* r = rows + p * D1;
      const float* w = weights + p * D1;
      Row acc = Row::Scaled(w[0] * alpha,
                            Row::Load(blurred + static_cast<size_t>(r[0]) * C));
      for (int k = 1; k < D1; ++k) {
        acc = acc.PlusScaled(
            w[k] * alpha, Row::Load(blurred + static_cast<size_t>(r[k]) * C));
      }
      return acc;
    }
    // Adds the point's row to its simplex's vertices in the target.
    void Splat(size_t p, const Row& q) const {
      const int32_t* r = rows + p * D1;
      const float* w = weights + p * D1;
      const float scale = norm[p];
      for (int k = 0; k < D1; ++k) {
        float* dst = target + static_cast<size_t>(r[k]) * C;
        Row::Load(dst).PlusScaled(w[k] * scale, q).Store(dst);
      }
    }
  };
  View view() const {
    return View{lattice_.vertex_rows(),
                lattice_.vertex_weights(),
                norm_,
                alpha_,
                weight_,
                blurred_,
                target_};
  }

  // Splats the first Q, to be blurred by the first iteration.
  void SplatFirst(const float* q, size_t n) const {
    const View v = view();
    for (size_t p = 0; p < n; ++p) v.Splat(p, Row::Load(q + p * C));
  }

 private:
  const PermutohedralLattice& lattice_;
  const float* norm_;
  float weight_;
  float alpha_;
  size_t cells_ = 0;
  std::vector<float> buffers_;
  float* target_ = nullptr;
  const float* blurred_ = nullptr;
};

// Mean field with each iteration's per-point work in one pass: per block
// of kLanes points, both kernels' slices, the energy, the softmax and the
// splats for the next iteration, the rows in registers and the block's rows
// on the stack for the softmax's transpose. The same operations in the same
// order as UnfusedMeanField, which writes the energy, the softmax and the splat
// input to memory and reads them back in separate passes. Rows of C floats;
// simplices of G1 and B1 vertices.
template <int C, int G1, int B1>
absl::Status FusedMeanField(const MeanFieldKernel& gaussian,
                            const MeanFieldKernel& bilateral,
                            const std::vector<float>& neg_unary, int iterations,
                            int labels, std::vector<float>* q,
                            const StopCheck* stop) {
  using Row = RowRegs<C>;
  const size_t n = neg_unary.size() / C;
  *q = neg_unary;
  SoftmaxRows<C>(q->data(), static_cast<int>(n), labels, C);
  if (iterations == 0) return absl::OkStatus();
  FusedKernel<C, G1> g(gaussian);
  FusedKernel<C, B1> b(bilateral);
  g.SplatFirst(q->data(), n);
  b.SplatFirst(q->data(), n);
  alignas(32) float block[kLanes * C];
  Floats t[C];
  for (int it = 0; it < iterations; ++it) {
    const bool last = it + 1 == iterations;
    RETURN_IF_ERROR(PollStop(stop, "the CRF's mean field"));
    g.Blur(!last);
    b.Blur(!last);
    const auto gv = g.view();
    const auto bv = b.view();
    const float* base = neg_unary.data();
    for (size_t p0 = 0; p0 < n; p0 += kLanes) {
      if (p0 % kStopPollPoints == 0 && p0 > 0)
        RETURN_IF_ERROR(PollStop(stop, "the CRF's mean field"));
      const int count = static_cast<int>(std::min<size_t>(kLanes, n - p0));
      // energy = -U + sum_k w_k * n_k * L_k(n_k * Q); the Potts
      // compatibility -w turns "subtract the pairwise term" into "add".
      for (int i = 0; i < count; ++i) {
        const size_t p = p0 + i;
        Row::Load(base + p * C)
            .PlusScaled(gv.OutScale(p), gv.Slice(p))
            .PlusScaled(bv.OutScale(p), bv.Slice(p))
            .Store(block + i * C);
      }
      std::fill(block + count * C, block + kLanes * C, 0.f);
      LabelVectors<C>::Load(block, t);
      SoftmaxLanes(t, labels, C);
      LabelVectors<C>::Store(t, block);
      if (last) {
        std::copy(block, block + count * C, q->data() + p0 * C);
        continue;
      }
      for (int i = 0; i < count; ++i) {
        const Row row = Row::Load(block + i * C);
        gv.Splat(p0 + i, row);
        bv.Splat(p0 + i, row);
      }
    }
  }
  return absl::OkStatus();
}

// Mean field as whole-array passes: each kernel's filter, then the softmax.
// For row widths and lattices FusedMeanField is not compiled for.
absl::Status UnfusedMeanField(const MeanFieldKernel& gaussian,
                              const MeanFieldKernel& bilateral,
                              const std::vector<float>& neg_unary,
                              int iterations, int labels, int stride,
                              std::vector<float>* q, const StopCheck* stop) {
  const int n = static_cast<int>(neg_unary.size() / stride);
  *q = neg_unary;
  std::vector<float> energy(q->size()), workspace;
  SoftmaxRows<0>(q->data(), n, labels, stride);
  for (int it = 0; it < iterations; ++it) {
    for (const MeanFieldKernel* k : {&gaussian, &bilateral}) {
      RETURN_IF_ERROR(PollStop(stop, "the CRF's mean field"));
      // energy = -U + sum_k w_k * n_k * L_k(n_k * Q), the scalings fused into
      // the filters (the first starts from -U).
      PermutohedralLattice::Scaling scaling;
      scaling.in_scale = k->norm;
      scaling.out_scale = k->norm;
      scaling.out_weight = k->weight;
      if (k == &gaussian) {
        scaling.base = neg_unary.data();
      } else {
        scaling.accumulate = true;
      }
      k->lattice->FilterScaled(q->data(), stride, energy.data(), scaling,
                               &workspace);
    }
    q->swap(energy);
    SoftmaxRows<0>(q->data(), n, labels, stride);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MeanField(const MeanFieldKernel& gaussian,
                       const MeanFieldKernel& bilateral,
                       const std::vector<float>& neg_unary, int iterations,
                       int labels, int stride, std::vector<float>* q,
                       const StopCheck* stop) {
  // The dense CRF's kernels: position (d = 2) and position and colour
  // (d = 5).
  if (gaussian.lattice->dim() == 2 && bilateral.lattice->dim() == 5) {
    const auto& g = gaussian;
    const auto& b = bilateral;
    switch (stride) {
      case 4:
        return FusedMeanField<4, 3, 6>(g, b, neg_unary, iterations, labels, q,
                                       stop);
      case 8:
        return FusedMeanField<8, 3, 6>(g, b, neg_unary, iterations, labels, q,
                                       stop);
      case 12:
        return FusedMeanField<12, 3, 6>(g, b, neg_unary, iterations, labels, q,
                                        stop);
      case 16:
        return FusedMeanField<16, 3, 6>(g, b, neg_unary, iterations, labels, q,
                                        stop);
      case 24:
        return FusedMeanField<24, 3, 6>(g, b, neg_unary, iterations, labels, q,
                                        stop);
      case 32:
        return FusedMeanField<32, 3, 6>(g, b, neg_unary, iterations, labels, q,
                                        stop);
    }
  }
  return UnfusedMeanField(gaussian, bilateral, neg_unary, iterations, labels,
                          stride, q, stop);
}

}  // namespace primaps
