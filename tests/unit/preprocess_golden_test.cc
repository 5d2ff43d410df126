// Preprocessing against tests/golden/make_golden.py (torch's interpolate and
// torchvision's crop arithmetic).
#include <gtest/gtest.h>

#include <cmath>

#include "engine/checkpoint/safetensors.h"
#include "engine/image/preprocess.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

TEST(PreprocessGoldenTest, MatchesTorchWithinFloatTolerance) {
  const std::string bytes =
      testing::ReadBinary(testing::FixturePath("preprocess.safetensors"));
  auto file = ParseSafetensors(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  int cases = 0;
  for (const char* name :
       {"landscape_center", "portrait_center", "landscape_full",
        "half_offset_center", "upscale_center"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    const TensorRecord& img = file->tensors.at(n + ".image");
    const TensorRecord& want = file->tensors.at(n + ".expected");
    int64_t resize;
    std::memcpy(&resize, file->tensors.at(n + ".resize").data.data(), 8);
    RgbImage image{static_cast<int>(img.shape[1]),
                   static_cast<int>(img.shape[0]),
                   std::vector<uint8_t>(img.data.begin(), img.data.end())};
    PreprocessOptions options;
    options.resize = static_cast<int>(resize);
    options.crop = n.find("full") != std::string::npos ? CropMode::kFull
                                                       : CropMode::kCenter;
    options.patch_size = 8;
    auto out = Preprocess(image, options);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->height, want.shape[1]);
    ASSERT_EQ(out->width, want.shape[2]);
    const std::vector<float> expected = Float32Values(want);
    float worst = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      worst = std::max(worst, std::abs(expected[i] - out->data[i]));
    }
    EXPECT_LT(worst, 1e-5f);
    ++cases;
  }
  EXPECT_EQ(cases, 5);
}

}  // namespace
}  // namespace primaps
