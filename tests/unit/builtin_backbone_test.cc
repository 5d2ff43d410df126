// The builtin backbone through PriMaPs: regions that differ in colour and
// texture come out as separate masks.
#include "engine/backbone/builtin_backbone.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

// Sky (smooth blue) above, grass (textured green) bottom left, brick
// (textured red) bottom right.
RgbImage ThreeRegionScene(LabelMap* truth) {
  const int w = 320, h = 320;
  std::mt19937 rng(4);
  std::uniform_int_distribution<int> noise(-35, 35);
  RgbImage image{w, h, std::vector<uint8_t>(w * h * 3)};
  *truth = LabelMap{w, h, std::vector<uint8_t>(w * h)};
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int region = y < 130 ? 0 : (x < 170 ? 1 : 2);
      truth->labels[y * w + x] = static_cast<uint8_t>(region);
      int r, g, b;
      if (region == 0) {
        r = 110 + y / 8, g = 160 + y / 10, b = 230;
      } else if (region == 1) {
        const int n = noise(rng);
        r = 60 + n / 2, g = 140 + n, b = 50 + n / 3;
      } else {
        const int n = ((x / 6 + y / 4) % 2) * 40 + noise(rng) / 2;
        r = 170 + n / 2, g = 70 + n / 3, b = 55 + n / 3;
      }
      uint8_t* px = &image.pixels[(y * w + x) * 3];
      px[0] = static_cast<uint8_t>(std::clamp(r, 0, 255));
      px[1] = static_cast<uint8_t>(std::clamp(g, 0, 255));
      px[2] = static_cast<uint8_t>(std::clamp(b, 0, 255));
    }
  }
  return image;
}

TEST(BuiltinBackboneTest, FeatureShape) {
  auto backbone = CreateBuiltinBackbone();
  EXPECT_EQ(backbone->id(), "builtin");
  NormalizedImage image;
  image.height = image.valid_height = 48;
  image.width = image.valid_width = 64;
  image.data.assign(3 * 48 * 64, 0.3f);
  auto features = backbone->Extract({&image});
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_EQ((*features)[0].dim, kBuiltinFeatureDim);
  EXPECT_EQ((*features)[0].height, 6);
  EXPECT_EQ((*features)[0].width, 8);
  for (float v : (*features)[0].data) ASSERT_TRUE(std::isfinite(v));
  NormalizedImage tiny;
  tiny.height = tiny.width = 4;
  tiny.data.assign(48, 0.f);
  EXPECT_FALSE(backbone->Extract({&tiny}).ok());
}

TEST(BuiltinBackboneTest, RegionsBecomeSeparateMasks) {
  LabelMap truth;
  const RgbImage scene = ThreeRegionScene(&truth);
  auto image = Preprocess(scene, PreprocessOptions{});
  ASSERT_TRUE(image.ok());
  auto features = CreateBuiltinBackbone()->Extract({&*image});
  ASSERT_TRUE(features.ok());
  auto result = ComputePriMaPs((*features)[0], *image, PriMaPsOptions{});
  ASSERT_TRUE(result.ok()) << result.status();
  // Each region's most common mask label covers most of it, and the three
  // regions get three different labels.
  std::set<int> majority_labels;
  for (int region = 0; region < 3; ++region) {
    std::map<int, int> counts;
    int total = 0;
    for (size_t i = 0; i < truth.labels.size(); ++i) {
      if (truth.labels[i] != region) continue;
      ++counts[result->mask_labels.labels[i]];
      ++total;
    }
    const auto best =
        std::max_element(counts.begin(), counts.end(),
                         [](auto a, auto b) { return a.second < b.second; });
    SCOPED_TRACE(::testing::Message()
                 << "region " << region << " label " << best->first);
    EXPECT_GT(best->first, 0) << "region is background";
    EXPECT_GE(static_cast<double>(best->second) / total, 0.85);
    majority_labels.insert(best->first);
  }
  EXPECT_EQ(majority_labels.size(), 3u);
}

TEST(BuiltinBackboneTest, DemoPhotosGiveSeveralMasks) {
  for (const char* name :
       {"cityscapes_example.png", "coco_example.jpg", "potsdam_example.png"}) {
    SCOPED_TRACE(name);
    const std::string bytes = testing::ReadBinary(testing::DemoImagePath(name));
    if (bytes.empty()) GTEST_SKIP() << "demo photos not found";
    auto rgb = DecodeImage(bytes);
    ASSERT_TRUE(rgb.ok());
    auto image = Preprocess(*rgb, PreprocessOptions{});
    ASSERT_TRUE(image.ok());
    auto features = CreateBuiltinBackbone()->Extract({&*image});
    ASSERT_TRUE(features.ok());
    auto result = ComputePriMaPs((*features)[0], *image, PriMaPsOptions{});
    ASSERT_TRUE(result.ok());
    EXPECT_GE(result->proposals.num_masks, 2);
    // Most pixels belong to some mask.
    size_t labelled = 0;
    for (uint8_t l : result->mask_labels.labels) labelled += l > 0;
    EXPECT_GT(static_cast<double>(labelled) / result->mask_labels.labels.size(),
              0.5);
    if (const char* dir = std::getenv("PRIMAPS_TEST_OUTPUT_DIR")) {
      auto overlay =
          RenderOverlay(DenormalizeToRgb(*image), result->mask_labels);
      auto png = EncodeRgbPng(*overlay);
      std::ofstream(std::string(dir) + "/" + name + ".overlay.png",
                    std::ios::binary)
          << *png;
    }
  }
}

}  // namespace
}  // namespace primaps
