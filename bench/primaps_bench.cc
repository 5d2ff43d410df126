// PriMaPs at 320x320 with D=384 features on a 40x40 grid: ms per image for
// the proposals without CRF, the CRF alone and the whole step, with 1 and 2
// threads. Prints a markdown table.
//
//   primaps_bench [--images=N] [--reps=N]
//
// Inputs are the demo photos when found (../shared/data/demo), otherwise
// generated scenes; features are built on the patch grid from the image
// (colour and position statistics lifted to 384 dimensions by a fixed random
// projection), so masks follow image regions as DINO features do.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "base/cpu_support.h"
#include "base/file_util.h"
#include "bench/bench_flags.h"
#include "engine/crf/dense_crf.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"
#include "engine/primaps_batch.h"
#include "engine/vit/vit_backbone.h"

namespace primaps {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

RgbImage GeneratedScene(uint32_t seed) {
  std::mt19937 rng(seed);
  RgbImage image{480, 360, std::vector<uint8_t>(480 * 360 * 3)};
  const int cx = 100 + rng() % 280, cy = 80 + rng() % 200;
  for (int y = 0; y < 360; ++y) {
    for (int x = 0; x < 480; ++x) {
      const int region = y < 120
                             ? 0
                             : ((x - cx) * (x - cx) + (y - cy) * (y - cy) < 6000
                                    ? 1
                                    : 2 + x / 240);
      for (int c = 0; c < 3; ++c) {
        image.pixels[(y * 480 + x) * 3 + c] = static_cast<uint8_t>(
            (region * 67 * (c + 1) + 30) % 220 + rng() % 24);
      }
    }
  }
  return image;
}

// D=384 features on the 40x40 grid of a 320x320 image: per-patch mean colour,
// colour spread and position, projected by a fixed random matrix.
FeatureMap Features(const NormalizedImage& image) {
  const int g = 40, p = 8, d = 384, stats = 9;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> projection(d * stats);
  for (float& v : projection) v = normal(rng);
  FeatureMap f{d, g, g, std::vector<float>(static_cast<size_t>(d) * g * g)};
  const size_t plane = static_cast<size_t>(image.height) * image.width;
  for (int gy = 0; gy < g; ++gy) {
    for (int gx = 0; gx < g; ++gx) {
      float s[stats] = {0};
      for (int c = 0; c < 3; ++c) {
        float sum = 0, sq = 0;
        for (int y = gy * p; y < (gy + 1) * p; ++y) {
          for (int x = gx * p; x < (gx + 1) * p; ++x) {
            const float v = image.data[c * plane + y * image.width + x];
            sum += v;
            sq += v * v;
          }
        }
        s[c] = sum / (p * p);
        s[3 + c] = std::sqrt(std::max(sq / (p * p) - s[c] * s[c], 0.f));
      }
      s[6] = gx / 40.f;
      s[7] = gy / 40.f;
      s[8] = 1.f;
      for (int k = 0; k < d; ++k) {
        float v = 0;
        for (int j = 0; j < stats; ++j) v += projection[k * stats + j] * s[j];
        f.data[(static_cast<size_t>(k) * g + gy) * g + gx] = std::tanh(v);
      }
    }
  }
  return f;
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  if (!CpuCanRunThisBuild(argv[0])) return 1;
  const int num_images = IntFlag(argc, argv, "images", 6);
  const int reps = IntFlag(argc, argv, "reps", 2);
  std::vector<NormalizedImage> images;
  const char* demos[] = {"cityscapes_example.png", "coco_example.jpg",
                         "potsdam_example.png"};
  for (int i = 0; i < num_images; ++i) {
    RgbImage rgb;
    auto bytes = ReadFile(std::string("../shared/data/demo/") + demos[i % 3]);
    auto decoded = bytes.ok() ? DecodeImage(*bytes)
                              : absl::StatusOr<RgbImage>(bytes.status());
    rgb = decoded.ok() && i < 3 ? *decoded : GeneratedScene(i);
    images.push_back(*Preprocess(rgb, PreprocessOptions{}));
  }
  std::vector<FeatureMap> features;
  for (const auto& image : images) features.push_back(Features(image));

  std::printf(
      "| threads | PriMaPs without CRF (ms/image) | CRF alone (ms/image) | "
      "whole step (ms/image) | masks/image |\n");
  std::printf("|---|---|---|---|---|\n");
  for (int threads : {1, 2}) {
    SetTorchThreads(
        1);  // parallelism comes from the pool, one image per thread
    PriMaPsOptions no_crf;
    no_crf.use_crf = false;
    PriMaPsOptions with_crf;
    double best_no_crf = 1e9, best_crf = 1e9, best_whole = 1e9;
    int total_masks = 0;
    for (int r = 0; r < reps; ++r) {
      ThreadPool pool(threads);
      std::vector<PriMaPsInput> inputs;
      for (size_t i = 0; i < images.size(); ++i)
        inputs.push_back({&features[i], &images[i]});
      auto start = Clock::now();
      auto plain = ComputePriMaPsBatch(inputs, no_crf, &pool);
      best_no_crf = std::min(best_no_crf, Ms(start) / images.size());
      // CRF alone, on the CRF inputs of the step above.
      std::vector<std::vector<float>> probs(images.size());
      std::vector<RgbImage> rgbs(images.size());
      std::vector<int> channels(images.size());
      total_masks = 0;
      for (size_t i = 0; i < images.size(); ++i) {
        const SoftMasks& m = plain[i]->proposals;
        total_masks += m.num_masks;
        channels[i] = m.num_masks + 1;
        probs[i] = UpsampledProbabilities(
            WithBackground(RefineMasks(m), m.num_masks, m.height, m.width),
            channels[i], m.height, m.width, images[i].height, images[i].width);
        rgbs[i] = DenormalizeToRgb(images[i]);
      }
      start = Clock::now();
      absl::BlockingCounter crf_done(static_cast<int>(images.size()));
      for (size_t i = 0; i < images.size(); ++i) {
        pool.Schedule([&, i] {
          (void)DenseCrfInference(rgbs[i], probs[i], channels[i]);
          crf_done.DecrementCount();
        });
      }
      crf_done.Wait();
      best_crf = std::min(best_crf, Ms(start) / images.size());
      start = Clock::now();
      auto whole = ComputePriMaPsBatch(inputs, with_crf, &pool);
      best_whole = std::min(best_whole, Ms(start) / images.size());
    }
    std::printf("| %d | %.1f | %.1f | %.1f | %.1f |\n", threads, best_no_crf,
                best_crf, best_whole,
                static_cast<double>(total_masks) / images.size());
  }
  return 0;
}
