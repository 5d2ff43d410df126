// The antialiased resize against Pillow: tests/golden/make_resize_golden.py
// wrote each input and Pillow's Image.resize(size, BILINEAR) of it.
#include "engine/image/resize_antialias.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <regex>

#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

RgbImage Load(const std::string& path) {
  auto image = DecodeImage(testing::ReadBinary(path));
  EXPECT_TRUE(image.ok()) << path << ": " << image.status();
  return image.ok() ? *image : RgbImage{};
}

LabelMap LoadLabels(const std::string& path) {
  auto labels = DecodeLabelPng(testing::ReadBinary(path));
  EXPECT_TRUE(labels.ok()) << path << ": " << labels.status();
  return labels.ok() ? *labels : LabelMap{};
}

// Calls `check` with the path and the regex groups of every Pillow golden
// whose name matches `pattern`; returns how many there were.
int ForEachGolden(const std::string& pattern,
                  const std::function<void(const std::string& path,
                                           const std::smatch& m)>& check) {
  const std::string dir = testing::FixturePath("pil_resize");
  const std::regex name(pattern);
  int cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(file, m, name)) continue;
    SCOPED_TRACE(file);
    check(dir + "/", m);
    ++cases;
  }
  return cases;
}

TEST(ResizeAntialiasTest, EqualsPillowByteForByte) {
  const int cases = ForEachGolden(
      R"(in_(\d+)x(\d+)_to_(\d+)x(\d+)\.png)",
      [](const std::string& dir, const std::smatch& m) {
        const RgbImage in =
            Load(dir + "in_" + m[1].str() + "x" + m[2].str() + ".png");
        const RgbImage want = Load(dir + m[0].str());
        ASSERT_EQ(in.width, std::stoi(m[1].str()));
        const RgbImage got = ResizeAntialias(in, want.width, want.height);
        ASSERT_EQ(got.width, want.width);
        ASSERT_EQ(got.height, want.height);
        int max_diff = 0;
        for (size_t i = 0; i < got.pixels.size(); ++i) {
          max_diff = std::max(
              max_diff, std::abs(int{got.pixels[i]} - int{want.pixels[i]}));
        }
        EXPECT_EQ(max_diff, 0);
      });
  EXPECT_GE(cases, 13);
}

TEST(ResizeAntialiasTest, SameSizeIsTheImage) {
  const RgbImage in{
      3, 2, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}};
  EXPECT_EQ(ResizeAntialias(in, 3, 2).pixels, in.pixels);
}

// Preprocess with the antialias filter is Pillow's resize, the center crop of
// the 8-bit result, then x / 255 and the ImageNet normalization.
TEST(ResizeAntialiasTest, PreprocessCropsThePillowResult) {
  const std::string dir = testing::FixturePath("pil_resize");
  const RgbImage in = Load(dir + "/in_250x167.png");
  // Short side 167 -> 160, long side int(160 * 250 / 167) = 239.
  const RgbImage small = ResizeAntialias(in, 239, 160);
  PreprocessOptions options;
  options.resize = 160;
  options.filter = ResizeFilter::kAntialias;
  auto out = Preprocess(in, options);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->width, 160);
  ASSERT_EQ(out->height, 160);
  const int left = 40;  // round((239 - 160) / 2), half to even
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 160; y += 7) {
      for (int x = 0; x < 160; x += 5) {
        const float want = (small.pixels[(y * 239 + x + left) * 3 + c] / 255.f -
                            kImageNetMean[c]) /
                           kImageNetStd[c];
        ASSERT_EQ(out->data[(c * 160 + y) * 160 + x], want)
            << c << " " << y << " " << x;
      }
    }
  }
}

// The two filters agree on smooth content and differ where the antialias
// filter averages: a 1-pixel checkerboard halved is grey with antialiasing
// and keeps its extremes without.
TEST(ResizeAntialiasTest, AntialiasAveragesWhereBilinearSamples) {
  RgbImage board{64, 64, std::vector<uint8_t>(64 * 64 * 3)};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c)
        board.pixels[(y * 64 + x) * 3 + c] = ((x + y) % 2) ? 255 : 0;
  const RgbImage half = ResizeAntialias(board, 16, 16);
  for (uint8_t v : half.pixels) {
    EXPECT_GE(v, 100);
    EXPECT_LE(v, 155);
  }
}

// Label maps against Pillow's NEAREST at torchvision's Resize(int) sizes.
TEST(ResizeLabelsTest, PillowNearestEqualsPillow) {
  const int cases = ForEachGolden(
      R"(lbl_(\d+)x(\d+)_short_(\d+)\.png)",
      [](const std::string& dir, const std::smatch& m) {
        const LabelMap in =
            LoadLabels(dir + "lbl_" + m[1].str() + "x" + m[2].str() + ".png");
        const LabelMap want = LoadLabels(dir + m[0].str());
        const LabelMap got =
            ResizeAndCropLabels(in, std::stoi(m[3].str()), CropMode::kFull,
                                LabelResize::kPillowNearest);
        ASSERT_EQ(got.width, want.width);
        ASSERT_EQ(got.height, want.height);
        EXPECT_EQ(got.labels, want.labels);
      });
  EXPECT_GE(cases, 9);
}

// torch's nearest takes floor(dst * scale), Pillow's the pixel centres: 5
// rows to 2 keep rows 0 and 2 with torch, 1 and 3 with Pillow.
TEST(ResizeLabelsTest, TorchAndPillowNearestDiffer) {
  const LabelMap tall{2, 5, {10, 10, 11, 11, 12, 12, 13, 13, 14, 14}};
  // 2x5 at short side 1: width 1, height int(1 * 5 / 2) = 2.
  EXPECT_EQ(
      ResizeAndCropLabels(tall, 1, CropMode::kFull, LabelResize::kTorchNearest)
          .labels,
      (std::vector<uint8_t>{10, 12}));
  EXPECT_EQ(
      ResizeAndCropLabels(tall, 1, CropMode::kFull, LabelResize::kPillowNearest)
          .labels,
      (std::vector<uint8_t>{11, 13}));
}

}  // namespace
}  // namespace primaps
