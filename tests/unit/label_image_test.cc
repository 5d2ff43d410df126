#include "engine/image/label_image.h"

#include <gtest/gtest.h>

#include <set>

namespace primaps {
namespace {

TEST(LabelImageTest, PngRoundTripKeepsIgnore) {
  LabelMap labels{3, 2, {0, 1, 2, 27, 254, kIgnoreLabel}};
  auto png = EncodeLabelPng(labels);
  ASSERT_TRUE(png.ok()) << png.status();
  auto back = DecodeLabelPng(*png);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->width, 3);
  EXPECT_EQ(back->height, 2);
  EXPECT_EQ(back->labels, labels.labels);
}

TEST(LabelImageTest, RgbPngIsNotALabelMap) {
  RgbImage image{2, 2, std::vector<uint8_t>(12, 7)};
  auto png = EncodeRgbPng(image);
  ASSERT_TRUE(png.ok());
  EXPECT_EQ(DecodeLabelPng(*png).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LabelImageTest, MismatchedSizesAreRefused) {
  EXPECT_FALSE(EncodeLabelPng(LabelMap{3, 3, {1, 2}}).ok());
  EXPECT_FALSE(EncodeLabelPng(LabelMap{}).ok());
}

TEST(LabelImageTest, PaletteColoursAreDistinct) {
  std::set<std::array<uint8_t, 3>> colours;
  for (int id = 0; id < 256; ++id)
    colours.insert(LabelColor(static_cast<uint8_t>(id)));
  EXPECT_EQ(colours.size(), 256u);
  EXPECT_EQ(LabelColor(1), (std::array<uint8_t, 3>{128, 0, 0}));
}

TEST(LabelImageTest, OverlayBlendsAndLeavesIgnoreAlone) {
  RgbImage image{2, 1, {100, 100, 100, 50, 60, 70}};
  LabelMap labels{2, 1, {1, kIgnoreLabel}};
  auto overlay = RenderOverlay(image, labels, 0.5f);
  ASSERT_TRUE(overlay.ok()) << overlay.status();
  EXPECT_EQ(overlay->pixels, (std::vector<uint8_t>{114, 50, 50, 50, 60, 70}));
}

TEST(LabelImageTest, OverlayScalesSmallerLabelMaps) {
  RgbImage image{4, 4, std::vector<uint8_t>(48, 0)};
  LabelMap labels{2, 2, {1, 2, 3, 4}};
  auto overlay = RenderOverlay(image, labels, 1.f);
  ASSERT_TRUE(overlay.ok());
  // Pixel (3, 3) takes label (1, 1) = 4.
  const auto colour = LabelColor(4);
  EXPECT_EQ(overlay->pixels[(3 * 4 + 3) * 3 + 2], colour[2]);
  EXPECT_FALSE(RenderOverlay(image, labels, 2.f).ok());
}

}  // namespace
}  // namespace primaps
