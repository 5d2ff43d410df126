// How often the cap on PriMaPs masks (PriMaPsOptions::max_masks, the
// server's --max_masks) ends a decomposition before 95% coverage: masks per
// image on the demo photos and on cluttered COCO-style scenes (many small
// objects), at the 320 centre crop and at the image's own size, with the
// built-in backbone's features. Each image is decomposed without a cap (254)
// and the table counts those that needed more than each cap. Prints a
// markdown table.
//
//   build/bench/primaps_mask_cap_bench [--scenes=N]   (from the repository
//   root)
#include <algorithm>
#include <array>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_support.h"
#include "base/file_util.h"
#include "bench/bench_flags.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"

namespace primaps {
namespace {

// A 640x480 scene of 8-31 objects (ellipses and boxes of random colours,
// with noise) on a two-tone ground: COCO's clutter, not its photos.
RgbImage ClutteredScene(uint32_t seed) {
  std::mt19937 rng(seed);
  const int w = 640, h = 480;
  RgbImage image{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  std::vector<int> region(static_cast<size_t>(w) * h);
  const int horizon = 150 + rng() % 200;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) region[y * w + x] = y < horizon ? 0 : 1;
  const int objects = 8 + rng() % 24;
  for (int o = 0; o < objects; ++o) {
    const int cx = rng() % w, cy = rng() % h;
    const int rx = 15 + rng() % 90, ry = 15 + rng() % 90;
    const bool box = rng() % 2 == 0;
    for (int y = std::max(0, cy - ry); y < std::min(h, cy + ry); ++y) {
      for (int x = std::max(0, cx - rx); x < std::min(w, cx + rx); ++x) {
        const double dx = double(x - cx) / rx, dy = double(y - cy) / ry;
        if (box || dx * dx + dy * dy < 1) region[y * w + x] = 2 + o;
      }
    }
  }
  std::vector<std::array<int, 3>> colours(2 + objects);
  for (auto& c : colours)
    for (int& v : c) v = 20 + rng() % 200;
  for (int i = 0; i < w * h; ++i) {
    for (int c = 0; c < 3; ++c) {
      const int v = colours[region[i]][c] + static_cast<int>(rng() % 30) - 15;
      image.pixels[static_cast<size_t>(i) * 3 + c] =
          static_cast<uint8_t>(std::clamp(v, 0, 255));
    }
  }
  return image;
}

struct Sample {
  std::string set;
  RgbImage image;
};

struct Row {
  int images = 0;
  int total_masks = 0;
  int most_masks = 0;
  int over_32 = 0, over_64 = 0, uncovered = 0;
};

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  if (!CpuCanRunThisBuild(argv[0])) return 1;
  const int scenes = IntFlag(argc, argv, "scenes", 12);
  std::vector<Sample> samples;
  for (const char* name :
       {"cityscapes_example.png", "coco_example.jpg", "potsdam_example.png"}) {
    auto bytes = ReadFile(std::string("../shared/data/demo/") + name);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s\n", bytes.status().ToString().c_str());
      return 1;
    }
    samples.push_back({"demo photos", *DecodeImage(*bytes)});
  }
  for (int i = 0; i < scenes; ++i)
    samples.push_back({"cluttered scenes", ClutteredScene(100 + i)});

  std::unique_ptr<Backbone> backbone = CreateBuiltinBackbone();
  PriMaPsOptions uncapped;
  uncapped.max_masks = 254;
  std::printf(
      "| images | size | n | masks per image (mean) | most | needed > 32 | "
      "needed > 64 | not covered at 254 "
      "|\n|---|---|---|---|---|---|---|---|\n");
  for (const char* set : {"demo photos", "cluttered scenes"}) {
    for (const bool original : {false, true}) {
      Row row;
      for (const Sample& s : samples) {
        if (s.set != set) continue;
        PreprocessOptions pre;
        if (original) {
          pre.resize = std::min(s.image.width, s.image.height);
          pre.crop = CropMode::kFull;
        }
        auto image = Preprocess(s.image, pre);
        auto features = backbone->Extract({&*image});
        if (!image.ok() || !features.ok()) {
          std::fprintf(stderr, "feature extraction failed\n");
          return 1;
        }
        auto masks = ProposeSoftMasks((*features)[0], uncapped);
        if (!masks.ok()) {
          std::fprintf(stderr, "%s\n", masks.status().ToString().c_str());
          return 1;
        }
        ++row.images;
        row.total_masks += masks->num_masks;
        row.most_masks = std::max(row.most_masks, masks->num_masks);
        row.over_32 += masks->num_masks > 32 || masks->capped;
        row.over_64 += masks->num_masks > 64 || masks->capped;
        row.uncovered += masks->capped;
      }
      std::printf("| %s | %s | %d | %.1f | %d | %d | %d | %d |\n", set,
                  original ? "original" : "320 crop", row.images,
                  static_cast<double>(row.total_masks) / row.images,
                  row.most_masks, row.over_32, row.over_64, row.uncovered);
    }
  }
  return 0;
}
