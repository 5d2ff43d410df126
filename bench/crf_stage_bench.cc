// Where the dense CRF's time goes at 320x320: lattice construction for each
// kernel, one filter pass of each lattice over rows of the padded label
// width, and the whole inference, in ms per image, single-threaded. Prints a
// markdown table.
//
//   primaps_crf_stage_bench [--labels=N] [--reps=N]
//
// Inputs are the demo photos (../shared/data/demo) when found, otherwise
// generated scenes; the probabilities are a soft colour clustering computed
// on a 40x40 grid and upsampled, so label regions look like PriMaPs masks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_support.h"
#include "base/file_util.h"
#include "bench/bench_flags.h"
#include "engine/crf/dense_crf.h"
#include "engine/crf/permutohedral_lattice.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"

namespace primaps {
namespace {

using Clock = std::chrono::steady_clock;

RgbImage Scene(int index) {
  const char* demos[] = {"cityscapes_example.png", "coco_example.jpg",
                         "potsdam_example.png"};
  auto bytes = ReadFile(std::string("../shared/data/demo/") + demos[index]);
  if (bytes.ok()) {
    auto decoded = DecodeImage(*bytes);
    if (decoded.ok()) return DenormalizeToRgb(*Preprocess(*decoded, {}));
  }
  std::mt19937 rng(index);
  RgbImage image{320, 320, std::vector<uint8_t>(320 * 320 * 3)};
  for (int y = 0; y < 320; ++y) {
    for (int x = 0; x < 320; ++x) {
      const int region = (x / 80 + y / 100 + index) % 4;
      for (int c = 0; c < 3; ++c)
        image.pixels[(y * 320 + x) * 3 + c] =
            static_cast<uint8_t>((region * 61 * (c + 1)) % 230 + rng() % 20);
    }
  }
  return image;
}

// Label-major probabilities: softmax over labels of the negative colour
// distance of each 8x8 cell's mean to fixed centres, nearest-upsampled.
std::vector<float> Probabilities(const RgbImage& image, int labels) {
  const int w = image.width, h = image.height, cell = 8;
  std::vector<float> probs(static_cast<size_t>(labels) * w * h);
  for (int cy = 0; cy < h; cy += cell) {
    for (int cx = 0; cx < w; cx += cell) {
      float mean[3] = {0, 0, 0};
      int count = 0;
      for (int y = cy; y < std::min(cy + cell, h); ++y) {
        for (int x = cx; x < std::min(cx + cell, w); ++x, ++count) {
          for (int c = 0; c < 3; ++c)
            mean[c] += image.pixels[(static_cast<size_t>(y) * w + x) * 3 + c];
        }
      }
      std::vector<float> score(labels);
      float total = 0;
      for (int l = 0; l < labels; ++l) {
        float dist = 0;
        for (int c = 0; c < 3; ++c) {
          const float centre = 255.f * ((l * (c + 2)) % labels) / labels;
          dist += std::fabs(mean[c] / count - centre);
        }
        score[l] = std::exp(-dist / 40.f);
        total += score[l];
      }
      for (int y = cy; y < std::min(cy + cell, h); ++y) {
        for (int x = cx; x < std::min(cx + cell, w); ++x) {
          for (int l = 0; l < labels; ++l)
            probs[(static_cast<size_t>(l) * h + y) * w + x] = score[l] / total;
        }
      }
    }
  }
  return probs;
}

template <typename F>
double BestMs(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    f();
    best = std::min(
        best, std::chrono::duration<double, std::milli>(Clock::now() - start)
                  .count());
  }
  return best;
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  if (!CpuCanRunThisBuild(argv[0])) return 1;
  const int labels = IntFlag(argc, argv, "labels", 5);
  const int reps = IntFlag(argc, argv, "reps", 5);
  const int width = (labels + 3) / 4 * 4;  // the CRF's padded row width
  const DenseCrfOptions options;
  std::printf(
      "| image | position lattice: build / vertices / filter (ms) | "
      "bilateral lattice: build / vertices / filter (ms) | whole CRF (ms) "
      "|\n|---|---|---|---|\n");
  for (int i = 0; i < 3; ++i) {
    const RgbImage image = Scene(i);
    const int n = image.width * image.height;
    std::vector<float> position(2 * static_cast<size_t>(n));
    std::vector<float> bilateral(5 * static_cast<size_t>(n));
    for (int p = 0; p < n; ++p) {
      const int x = p % image.width, y = p / image.width;
      position[2 * p] = x / options.gaussian_sxy;
      position[2 * p + 1] = y / options.gaussian_sxy;
      bilateral[5 * p] = x / options.bilateral_sxy;
      bilateral[5 * p + 1] = y / options.bilateral_sxy;
      for (int c = 0; c < 3; ++c)
        bilateral[5 * p + 2 + c] =
            image.pixels[3 * static_cast<size_t>(p) + c] /
            options.bilateral_srgb;
    }
    std::vector<float> in(static_cast<size_t>(n) * width, 0.5f), out(in.size()),
        workspace;
    const double build_position = BestMs(
        reps, [&] { PermutohedralLattice lattice(position.data(), n, 2); });
    const double build_bilateral = BestMs(
        reps, [&] { PermutohedralLattice lattice(bilateral.data(), n, 5); });
    const PermutohedralLattice position_lattice(position.data(), n, 2);
    const PermutohedralLattice bilateral_lattice(bilateral.data(), n, 5);
    const double filter_position = BestMs(reps, [&] {
      position_lattice.Filter(in.data(), width, out.data(), &workspace);
    });
    const double filter_bilateral = BestMs(reps, [&] {
      bilateral_lattice.Filter(in.data(), width, out.data(), &workspace);
    });
    const std::vector<float> probs = Probabilities(image, labels);
    const double whole =
        BestMs(reps, [&] { (void)DenseCrfInference(image, probs, labels); });
    std::printf("| %d | %.2f / %d / %.2f | %.2f / %d / %.2f | %.1f |\n", i,
                build_position, position_lattice.num_vertices(),
                filter_position, build_bilateral,
                bilateral_lattice.num_vertices(), filter_bilateral, whole);
  }
  return 0;
}
