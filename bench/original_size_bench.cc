// The cost and quality of original-size labels against processed-size ones,
// per demo photo, in one run: the engine (built-in backbone, PriMaPs with
// the CRF) on one thread, for
//   processed  whole image (crop full), labels at the processed size
//   orig/crf@processed  labels at the original size, CRF on the processed
//                       image, its marginals resized (the default)
//   orig/crf@original   labels at the original size, CRF on the original
// Quality without ground truth: agreement with the processed labels
// nearest-upsampled, and how well label boundaries follow image edges (the
// mean Sobel gradient on boundary pixels over the mean on all pixels).
//
//   primaps_original_size_bench [--images_dir=DIR] [--repeats=N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "base/file_util.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"

namespace primaps {
namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  LabelMap labels;
  NormalizedImage processed;
  double ms = 0;
};

// Decode, preprocess (whole image at resize 320), features, PriMaPs.
Run Label(Backbone& backbone, const std::string& bytes, OutputSize size,
          CrfResolution crf_at, int repeats) {
  Run run;
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    RgbImage rgb = *DecodeImage(bytes);
    PreprocessOptions preprocess;
    preprocess.crop = CropMode::kFull;
    preprocess.filter = ResizeFilter::kAntialias;
    run.processed = *Preprocess(rgb, preprocess);
    auto features = backbone.Extract({&run.processed});
    OutputTarget target;
    target.size = size;
    target.crf_resolution = crf_at;
    target.width = rgb.width;
    target.height = rgb.height;
    target.pixels = &rgb;
    auto result =
        ComputePriMaPs((*features)[0], run.processed, PriMaPsOptions{}, target);
    if (!result.ok()) {
      std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
      std::exit(1);
    }
    times.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - start)
            .count());
    run.labels = std::move(result->mask_labels);
  }
  std::sort(times.begin(), times.end());
  run.ms = times[times.size() / 2];
  return run;
}

// `processed`'s content window resized to w x h (nearest, floor(dst*in/out)).
LabelMap Upsampled(const LabelMap& processed, int rows, int cols, int w,
                   int h) {
  LabelMap out{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h)};
  for (int y = 0; y < h; ++y) {
    const int sy = static_cast<int>(static_cast<int64_t>(y) * rows / h);
    for (int x = 0; x < w; ++x) {
      const int sx = static_cast<int>(static_cast<int64_t>(x) * cols / w);
      out.labels[static_cast<size_t>(y) * w + x] =
          processed.labels[static_cast<size_t>(sy) * processed.width + sx];
    }
  }
  return out;
}

double Agreement(const LabelMap& a, const LabelMap& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.labels.size(); ++i)
    same += a.labels[i] == b.labels[i];
  return 100.0 * same / a.labels.size();
}

// Mean gradient magnitude on label boundaries over the mean everywhere.
double EdgeRatio(const RgbImage& rgb, const LabelMap& labels) {
  const int w = rgb.width, h = rgb.height;
  auto grey = [&](int x, int y) {
    const uint8_t* p = &rgb.pixels[(static_cast<size_t>(y) * w + x) * 3];
    return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
  };
  double all = 0, boundary = 0;
  int64_t n_all = 0, n_boundary = 0;
  for (int y = 1; y + 1 < h; ++y) {
    for (int x = 1; x + 1 < w; ++x) {
      const double gx = grey(x + 1, y - 1) + 2 * grey(x + 1, y) +
                        grey(x + 1, y + 1) - grey(x - 1, y - 1) -
                        2 * grey(x - 1, y) - grey(x - 1, y + 1);
      const double gy = grey(x - 1, y + 1) + 2 * grey(x, y + 1) +
                        grey(x + 1, y + 1) - grey(x - 1, y - 1) -
                        2 * grey(x, y - 1) - grey(x + 1, y - 1);
      const double g = std::sqrt(gx * gx + gy * gy);
      all += g;
      ++n_all;
      const size_t i = static_cast<size_t>(y) * w + x;
      if (labels.labels[i] != labels.labels[i + 1] ||
          labels.labels[i] != labels.labels[i + w]) {
        boundary += g;
        ++n_boundary;
      }
    }
  }
  if (n_boundary == 0 || all == 0) return 0;
  return (boundary / n_boundary) / (all / n_all);
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  std::string dir = "../shared/data/demo";
  int repeats = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (absl::StartsWith(arg, "--images_dir=")) dir = arg.substr(13);
    if (absl::StartsWith(arg, "--repeats="))
      (void)absl::SimpleAtoi(arg.substr(10), &repeats);
  }
  using namespace primaps;
  auto backbone = CreateBuiltinBackbone();
  std::vector<std::string> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  std::printf(
      "| photo | size | processed ms | orig/crf@processed ms (x) | "
      "orig/crf@original ms (x) | agree crf@processed %% | agree "
      "crf@original %% | edge ratio processed up / crf@processed / "
      "crf@original |\n|---|---|---|---|---|---|---|---|\n");
  for (const std::string& path : paths) {
    auto bytes = ReadFile(path);
    if (!bytes.ok()) continue;
    auto rgb = DecodeImage(*bytes);
    if (!rgb.ok()) continue;
    const Run processed = Label(*backbone, *bytes, OutputSize::kProcessed,
                                CrfResolution::kProcessed, repeats);
    const Run at_processed = Label(*backbone, *bytes, OutputSize::kOriginal,
                                   CrfResolution::kProcessed, repeats);
    const Run at_original = Label(*backbone, *bytes, OutputSize::kOriginal,
                                  CrfResolution::kOriginal, repeats);
    const LabelMap up =
        Upsampled(processed.labels, processed.processed.valid_height,
                  processed.processed.valid_width, rgb->width, rgb->height);
    std::printf(
        "| %s | %dx%d | %.0f | %.0f (%.2f) | %.0f (%.2f) | %.2f | %.2f | "
        "%.2f / %.2f / %.2f |\n",
        std::filesystem::path(path).filename().c_str(), rgb->width, rgb->height,
        processed.ms, at_processed.ms, at_processed.ms / processed.ms,
        at_original.ms, at_original.ms / processed.ms,
        Agreement(at_processed.labels, up), Agreement(at_original.labels, up),
        EdgeRatio(*rgb, up), EdgeRatio(*rgb, at_processed.labels),
        EdgeRatio(*rgb, at_original.labels));
    std::fflush(stdout);
  }
  return 0;
}
