#include "engine/dense_crf.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif
#include <map>
#include <mutex>
#include <tuple>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/permutohedral_lattice.h"
#include "engine/simd_lanes.h"

namespace primaps {
namespace {

// A lattice and its symmetric normalization n = 1 / sqrt(L(1) + 1e-20).
struct NormalizedLattice {
  NormalizedLattice(const std::vector<float>& features, int num_points, int dim)
      : lattice(features.data(), num_points, dim) {
    std::vector<float> ones(num_points, 1.f), workspace;
    norm.resize(num_points);
    lattice.Filter(ones.data(), 1, norm.data(), &workspace);
    for (float& v : norm) v = 1.f / std::sqrt(v + 1e-20f);
  }

  PermutohedralLattice lattice;
  std::vector<float> norm;  // per pixel
};

// One pairwise term: its normalized lattice and weight.
struct Kernel {
  std::shared_ptr<const NormalizedLattice> lattice;
  float weight = 0;
};

// The Gaussian kernel's lattice and normalization depend only on the image
// size and sxy, so they are built once per size and shared (immutable).
std::shared_ptr<const NormalizedLattice> PositionLattice(int width, int height,
                                                         float sxy) {
  static std::mutex mu;
  static auto* cache = new std::map<std::tuple<int, int, float>,
                                    std::shared_ptr<const NormalizedLattice>>();
  const auto key = std::make_tuple(width, height, sxy);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  std::vector<float> features(static_cast<size_t>(width) * height * 2);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      features[2 * (static_cast<size_t>(y) * width + x)] = x / sxy;
      features[2 * (static_cast<size_t>(y) * width + x) + 1] = y / sxy;
    }
  }
  auto lattice =
      std::make_shared<const NormalizedLattice>(features, width * height, 2);
  std::lock_guard<std::mutex> lock(mu);
  // Bound the cache: a server sees few distinct sizes, a batch job over
  // mixed "full" crops may see many.
  if (cache->size() >= 32) cache->clear();
  cache->emplace(key, lattice);
  return lattice;
}

using simd::ExpNonPositive;
using simd::Floats;
using simd::Ints;
using simd::kLanes;
using simd::Select;

// Marginals of far-away labels get tiny; denormal arithmetic on them is
// 100x slower on x86. Flush denormals to zero while the CRF runs, and put
// the caller's floating-point mode back afterwards.
class FlushDenormalsGuard {
 public:
#if defined(__SSE__)
  FlushDenormalsGuard() : saved_(_mm_getcsr()) {
    _mm_setcsr(saved_ | 0x8040);
  }  // FTZ | DAZ
  ~FlushDenormalsGuard() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

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

// Mean-field iterations on pixel-major rows of `stride` floats, updating q in
// place. See DenseCrfInference for the update.
template <int S>
void MeanField(const Kernel& gaussian, const Kernel& bilateral,
               const std::vector<float>& neg_unary, int iterations, int labels,
               int stride, size_t n, std::vector<float>* q) {
  const int width = Rows<S>::Width(stride);
  std::vector<float> energy(n * width), workspace;
  SoftmaxRows<S>(q->data(), static_cast<int>(n), labels, width);
  for (int it = 0; it < iterations; ++it) {
    for (const Kernel* k : {&gaussian, &bilateral}) {
      // energy = -U + sum_k w_k * n_k * L_k(n_k * Q), the scalings fused into
      // the filters (the first starts from -U); the Potts compatibility -w
      // turns "subtract the pairwise term" into "add".
      PermutohedralLattice::Scaling scaling;
      scaling.in_scale = k->lattice->norm.data();
      scaling.out_scale = k->lattice->norm.data();
      scaling.out_weight = k->weight;
      if (k == &gaussian) {
        scaling.base = neg_unary.data();
      } else {
        scaling.accumulate = true;
      }
      k->lattice->lattice.FilterScaled(q->data(), width, energy.data(), scaling,
                                       &workspace);
    }
    q->swap(energy);
    SoftmaxRows<S>(q->data(), static_cast<int>(n), labels, width);
  }
}

}  // namespace

absl::StatusOr<std::vector<float>> DenseCrfInference(
    const RgbImage& image, const std::vector<float>& probs, int num_labels,
    const DenseCrfOptions& options) {
  const int w = image.width, h = image.height;
  const size_t n = static_cast<size_t>(w) * h;
  if (w <= 0 || h <= 0 || image.pixels.size() != 3 * n) {
    return absl::InvalidArgumentError(absl::StrCat("CRF image of ", w, "x", h,
                                                   " has ", image.pixels.size(),
                                                   " bytes of pixels"));
  }
  if (num_labels < 1 || probs.size() != n * num_labels) {
    return absl::InvalidArgumentError(
        absl::StrCat("CRF probabilities have ", probs.size(),
                     " values, expected ", num_labels, " x ", w, " x ", h));
  }
  if (options.iterations < 0 || !(options.gaussian_sxy > 0) ||
      !(options.bilateral_sxy > 0) || !(options.bilateral_srgb > 0) ||
      !(options.prob_clip > 0)) {
    return absl::InvalidArgumentError(
        "CRF iterations must be >= 0 and the kernel widths and clip > 0");
  }
  FlushDenormalsGuard flush_denormals;
  Kernel gaussian, bilateral;
  gaussian.lattice = PositionLattice(w, h, options.gaussian_sxy);
  gaussian.weight = options.gaussian_weight;
  {
    // The same quotients as dividing per pixel, taken from tables: one
    // division per column and per colour level instead of five per pixel.
    std::vector<float> column(w), level(256);
    for (int x = 0; x < w; ++x) column[x] = x / options.bilateral_sxy;
    for (int v = 0; v < 256; ++v) level[v] = v / options.bilateral_srgb;
    std::vector<float> features(n * 5);
    for (int y = 0; y < h; ++y) {
      const float row = y / options.bilateral_sxy;
      for (int x = 0; x < w; ++x) {
        const size_t p = static_cast<size_t>(y) * w + x;
        float* f = &features[5 * p];
        f[0] = column[x];
        f[1] = row;
        for (int c = 0; c < 3; ++c) f[2 + c] = level[image.pixels[3 * p + c]];
      }
    }
    bilateral.lattice = std::make_shared<const NormalizedLattice>(
        features, static_cast<int>(n), 5);
    bilateral.weight = options.bilateral_weight;
  }

  // Pixel-major working copies with rows padded to a multiple of 4 labels
  // (the padding stays 0): fixed-width rows vectorize without scalar tails,
  // which measured fewer instructions than unpadded rows of 5.
  const int L = num_labels;
  const int S = (L + 3) / 4 * 4;
  std::vector<float> neg_unary(n * S, 0.f), q(n * S, 0.f);
  for (size_t p = 0; p < n; ++p) {
    for (int l = 0; l < L; ++l) {
      const float prob =
          std::min(std::max(probs[l * n + p], options.prob_clip), 1.f);
      neg_unary[p * S + l] = std::log(prob);
      q[p * S + l] = neg_unary[p * S + l];
    }
  }
  switch (S) {
    case 4:
      MeanField<4>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                   &q);
      break;
    case 8:
      MeanField<8>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                   &q);
      break;
    case 12:
      MeanField<12>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                    &q);
      break;
    case 16:
      MeanField<16>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                    &q);
      break;
    case 24:
      MeanField<24>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                    &q);
      break;
    case 32:
      MeanField<32>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                    &q);
      break;
    default:
      MeanField<0>(gaussian, bilateral, neg_unary, options.iterations, L, S, n,
                   &q);
  }
  std::vector<float> out(n * L);
  for (size_t p = 0; p < n; ++p) {
    for (int l = 0; l < L; ++l) out[l * n + p] = q[p * S + l];
  }
  return out;
}

LabelMap ArgmaxLabels(const std::vector<float>& scores, int num_labels,
                      int width, int height) {
  LabelMap labels{width, height,
                  std::vector<uint8_t>(static_cast<size_t>(width) * height, 0)};
  const size_t n = labels.labels.size();
  for (size_t p = 0; p < n; ++p) {
    int best = 0;
    for (int l = 1; l < num_labels; ++l) {
      if (scores[l * n + p] > scores[best * n + p]) best = l;
    }
    labels.labels[p] = static_cast<uint8_t>(best);
  }
  return labels;
}

}  // namespace primaps
