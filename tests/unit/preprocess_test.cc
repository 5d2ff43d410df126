#include "engine/image/preprocess.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/image/channel_maps.h"

namespace primaps {
namespace {

RgbImage Constant(int width, int height, uint8_t r, uint8_t g, uint8_t b) {
  RgbImage image{width, height, {}};
  for (int i = 0; i < width * height; ++i) {
    image.pixels.insert(image.pixels.end(), {r, g, b});
  }
  return image;
}

TEST(PreprocessTest, CenterCropIsSquare) {
  auto out = Preprocess(Constant(64, 40, 1, 2, 3), {20, CropMode::kCenter, 8});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->height, 20);
  EXPECT_EQ(out->width, 20);
  EXPECT_EQ(out->data.size(), 3u * 20 * 20);
}

TEST(PreprocessTest, FullModePadsToPatchMultiple) {
  // 64x40 -> short side 20 -> 32x20 -> padded to 32x24 with patch 8.
  auto out =
      Preprocess(Constant(64, 40, 255, 255, 255), {20, CropMode::kFull, 8});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->valid_width, 32);
  EXPECT_EQ(out->valid_height, 20);
  EXPECT_EQ(out->width, 32);
  EXPECT_EQ(out->height, 24);
  // Padding is zero after normalization; content is (1 - mean) / std.
  const size_t plane = 24 * 32;
  EXPECT_EQ(out->data[23 * 32 + 5], 0.f);
  EXPECT_NEAR(out->data[plane + 0], (1.f - kImageNetMean[1]) / kImageNetStd[1],
              1e-6);
}

TEST(PreprocessTest, ConstantImageNormalizes) {
  auto out =
      Preprocess(Constant(30, 30, 0, 128, 255), {16, CropMode::kCenter, 8});
  ASSERT_TRUE(out.ok());
  const size_t plane = 16 * 16;
  for (size_t i = 0; i < plane; ++i) {
    ASSERT_NEAR(out->data[i], (0.f - kImageNetMean[0]) / kImageNetStd[0], 1e-5);
    ASSERT_NEAR(out->data[plane + i],
                (128.f / 255.f - kImageNetMean[1]) / kImageNetStd[1], 1e-5);
    ASSERT_NEAR(out->data[2 * plane + i],
                (1.f - kImageNetMean[2]) / kImageNetStd[2], 1e-5);
  }
}

TEST(PreprocessTest, DenormalizeInvertsNormalize) {
  RgbImage image{4, 4, {}};
  for (int i = 0; i < 48; ++i)
    image.pixels.push_back(static_cast<uint8_t>(i * 5));
  auto out = Preprocess(image, {4, CropMode::kCenter, 4});
  ASSERT_TRUE(out.ok());
  const RgbImage back = DenormalizeToRgb(*out);
  for (int i = 0; i < 48; ++i) {
    // Truncation may lose one step to float rounding.
    EXPECT_NEAR(back.pixels[i], image.pixels[i], 1) << i;
  }
}

TEST(PreprocessTest, ResizeOfSameSizeIsIdentity) {
  std::vector<float> src(2 * 5 * 7);
  for (size_t i = 0; i < src.size(); ++i)
    src[i] = std::sin(static_cast<float>(i));
  const std::vector<float> out =
      ResizeBilinearWindow(src.data(), 2, 5, 7, 5, 7, 0, 0, 5, 7);
  EXPECT_EQ(out, src);
}

TEST(PreprocessTest, ExtremeAspectRatios) {
  // 1x2000: a center crop only computes its window; a full crop would be
  // 320 x 640000 and is refused.
  const RgbImage thin = Constant(2000, 1, 10, 20, 30);
  auto center = Preprocess(thin, {320, CropMode::kCenter, 8});
  ASSERT_TRUE(center.ok()) << center.status();
  EXPECT_EQ(center->width, 320);
  auto full = Preprocess(thin, {320, CropMode::kFull, 8});
  EXPECT_EQ(full.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(full.status().message().find("640000x320"), std::string::npos)
      << full.status();
  // 1x1 works in both modes.
  EXPECT_TRUE(
      Preprocess(Constant(1, 1, 1, 2, 3), {16, CropMode::kFull, 8}).ok());
  EXPECT_TRUE(
      Preprocess(Constant(1, 1, 1, 2, 3), {16, CropMode::kCenter, 8}).ok());
}

TEST(PreprocessTest, BadOptionsAndImagesAreRefused) {
  EXPECT_EQ(Preprocess(Constant(8, 8, 0, 0, 0), {0, CropMode::kCenter, 8})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Preprocess(Constant(8, 8, 0, 0, 0), {8, CropMode::kFull, 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  RgbImage broken{8, 8, std::vector<uint8_t>(10)};
  EXPECT_EQ(Preprocess(broken, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Preprocess(RgbImage{}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace primaps
