#include "engine/crf/dense_crf.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <map>
#include <mutex>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/crf/mean_field.h"
#include "engine/crf/permutohedral_lattice.h"

namespace primaps {
namespace {

// A lattice and its symmetric normalization n = 1 / sqrt(L(1) + 1e-20).
struct NormalizedLattice {
  NormalizedLattice(const std::vector<float>& features, int num_points, int dim,
                    const StopCheck* stop)
      : lattice(features.data(), num_points, dim, stop) {
    if (!lattice.stopped().ok()) return;
    std::vector<float> ones(num_points, 1.f), workspace;
    norm.resize(num_points);
    lattice.Filter(ones.data(), 1, norm.data(), &workspace);
    for (float& v : norm) v = 1.f / std::sqrt(v + 1e-20f);
  }

  PermutohedralLattice lattice;
  std::vector<float> norm;  // per pixel
};

// The Gaussian kernel's lattice and normalization depend only on the image
// size and sxy, so they are built once per size and shared (immutable).
// The cache holds at most kMaxCachedPoints points in all (about 100 bytes
// each): large sizes are reused too (their build is the longest step of the
// CRF that cannot stop half-way), and the memory stays bounded whatever
// sizes come.
constexpr int64_t kMaxCachedPoints = int64_t{1} << 21;
std::shared_ptr<const NormalizedLattice> PositionLattice(
    int width, int height, float sxy, const StopCheck* stop) {
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
  auto lattice = std::make_shared<const NormalizedLattice>(
      features, width * height, 2, stop);
  if (!lattice->lattice.stopped().ok()) return lattice;  // never cached
  const int64_t points = static_cast<int64_t>(width) * height;
  if (points > kMaxCachedPoints) return lattice;
  std::lock_guard<std::mutex> lock(mu);
  static int64_t cached_points = 0;
  // A server sees few distinct sizes; a batch job over mixed "full" crops
  // may see many: start over when the next one would not fit.
  if (cached_points + points > kMaxCachedPoints) {
    cache->clear();
    cached_points = 0;
  }
  if (cache->emplace(key, lattice).second) cached_points += points;
  return lattice;
}

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
  const std::shared_ptr<const NormalizedLattice> gaussian =
      PositionLattice(w, h, options.gaussian_sxy, options.stop);
  RETURN_IF_ERROR(gaussian->lattice.stopped());
  std::shared_ptr<const NormalizedLattice> bilateral;
  RETURN_IF_ERROR(PollStop(options.stop, "the CRF's lattices"));
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
    bilateral = std::make_shared<const NormalizedLattice>(
        features, static_cast<int>(n), 5, options.stop);
  }
  RETURN_IF_ERROR(bilateral->lattice.stopped());

  // Pixel-major rows padded to a multiple of 4 labels
  // (the padding stays 0): fixed-width rows vectorize without scalar tails,
  // which measured fewer instructions than unpadded rows of 5.
  const int L = num_labels;
  const int S = (L + 3) / 4 * 4;
  std::vector<float> neg_unary(n * S, 0.f);
  for (size_t p = 0; p < n; ++p) {
    for (int l = 0; l < L; ++l) {
      const float prob =
          std::min(std::max(probs[l * n + p], options.prob_clip), 1.f);
      neg_unary[p * S + l] = std::log(prob);
    }
  }
  RETURN_IF_ERROR(PollStop(options.stop, "the CRF's lattices"));
  std::vector<float> q;
  RETURN_IF_ERROR(MeanField(
      {&gaussian->lattice, gaussian->norm.data(), options.gaussian_weight},
      {&bilateral->lattice, bilateral->norm.data(), options.bilateral_weight},
      neg_unary, options.iterations, L, S, &q, options.stop));
  std::vector<float> out(n * L);
  for (size_t p = 0; p < n; ++p) {
    for (int l = 0; l < L; ++l) out[l * n + p] = q[p * S + l];
  }
  return out;
}

}  // namespace primaps
