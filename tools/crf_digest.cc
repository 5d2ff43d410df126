// Prints a digest (FNV-1a over the bytes of the output floats) of the dense
// CRF's marginals for each image given, at several label counts, from
// deterministic pseudo-random probabilities. Two builds whose kernels must
// give the same floats (the AVX2 and the SSE2 build) must print the same
// lines; scripts/run_sse2_kernels.sh compares them.
//
//   primaps-crf-digest IMAGE...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "engine/crf/dense_crf.h"
#include "engine/image/image_decode.h"

namespace {

// At most kMaxWidth x kMaxHeight from the top-left corner: quick to run,
// and an odd pixel count, so that the SIMD blocks over pixels have a tail.
constexpr int kMaxWidth = 157, kMaxHeight = 101;

primaps::RgbImage TopLeft(const primaps::RgbImage& image) {
  const int w = std::min(image.width, kMaxWidth);
  const int h = std::min(image.height, kMaxHeight);
  primaps::RgbImage out{w, h,
                        std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  for (int y = 0; y < h; ++y) {
    std::memcpy(&out.pixels[static_cast<size_t>(y) * w * 3],
                &image.pixels[static_cast<size_t>(y) * image.width * 3], w * 3);
  }
  return out;
}

// Label-major probabilities, each pixel's summing to 1.
std::vector<float> RandomProbabilities(int labels, size_t pixels,
                                       uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.01f, 1.f);
  std::vector<float> probs(labels * pixels), row(labels);
  for (size_t p = 0; p < pixels; ++p) {
    float total = 0;
    for (float& v : row) total += v = u(rng);
    for (int l = 0; l < labels; ++l) probs[l * pixels + p] = row[l] / total;
  }
  return probs;
}

uint64_t Fnv1a(const std::vector<float>& values) {
  uint64_t hash = 1469598103934665603ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(float); ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s IMAGE...\n", argv[0]);
    return 2;
  }
  for (int a = 1; a < argc; ++a) {
    const auto bytes = primaps::ReadFile(argv[a]);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s\n", bytes.status().ToString().c_str());
      return 1;
    }
    const auto decoded = primaps::DecodeImage(*bytes);
    if (!decoded.ok()) {
      std::fprintf(stderr, "%s: %s\n", argv[a],
                   decoded.status().ToString().c_str());
      return 1;
    }
    const primaps::RgbImage image = TopLeft(*decoded);
    const size_t pixels = static_cast<size_t>(image.width) * image.height;
    for (int labels : {2, 3, 4, 5, 8, 13}) {
      const auto marginals = primaps::DenseCrfInference(
          image, RandomProbabilities(labels, pixels, labels), labels);
      if (!marginals.ok()) {
        std::fprintf(stderr, "%s\n", marginals.status().ToString().c_str());
        return 1;
      }
      std::printf("%s %dx%d labels=%d %016llx\n", argv[a], image.width,
                  image.height, labels,
                  static_cast<unsigned long long>(Fnv1a(*marginals)));
    }
  }
  return 0;
}
