#include "engine/image/image_decode.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "tests/unit/cmyk_jpeg.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::Encode;
using ::primaps::testing::MakePattern;

// Pixel (x, y) of a decoded RgbImage compared with BGR pixel of a cv::Mat.
void ExpectSameRgb(const RgbImage& image, const cv::Mat& bgr, int tolerance) {
  ASSERT_EQ(image.width, bgr.cols);
  ASSERT_EQ(image.height, bgr.rows);
  int worst = 0;
  for (int y = 0; y < bgr.rows; ++y) {
    for (int x = 0; x < bgr.cols; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int got = image.pixels[(y * image.width + x) * 3 + c];
        const int want = bgr.at<cv::Vec3b>(y, x)[2 - c];
        worst = std::max(worst, std::abs(got - want));
      }
    }
  }
  EXPECT_LE(worst, tolerance);
}

TEST(DecodeImageTest, LosslessFormatsRoundTripExactly) {
  const cv::Mat pattern = MakePattern(41, 29);
  for (const char* ext : {".png", ".bmp", ".webp", ".tiff"}) {
    SCOPED_TRACE(ext);
    auto image = DecodeImage(Encode(pattern, ext));
    ASSERT_TRUE(image.ok()) << image.status();
    ExpectSameRgb(*image, pattern, 0);
  }
}

TEST(DecodeImageTest, JpegDecodesClose) {
  cv::Mat flat(16, 24, CV_8UC3, cv::Scalar(30, 120, 200));
  auto image = DecodeImage(Encode(flat, ".jpg"));
  ASSERT_TRUE(image.ok()) << image.status();
  ExpectSameRgb(*image, flat, 3);
}

TEST(DecodeImageTest, GrayscaleBecomesRgb) {
  const cv::Mat gray = MakePattern(10, 6, CV_8UC1);
  auto image = DecodeImage(Encode(gray, ".png"));
  ASSERT_TRUE(image.ok()) << image.status();
  for (int i = 0; i < 60; ++i) {
    const uint8_t v = gray.data[i];
    EXPECT_EQ(image->pixels[3 * i], v);
    EXPECT_EQ(image->pixels[3 * i + 1], v);
    EXPECT_EQ(image->pixels[3 * i + 2], v);
  }
}

TEST(DecodeImageTest, RgbaDropsAlpha) {
  cv::Mat bgra = MakePattern(9, 7, CV_8UC4);
  auto image = DecodeImage(Encode(bgra, ".png"));
  ASSERT_TRUE(image.ok()) << image.status();
  cv::Mat bgr;
  cv::cvtColor(bgra, bgr, cv::COLOR_BGRA2BGR);
  ExpectSameRgb(*image, bgr, 0);
}

TEST(DecodeImageTest, SixteenBitKeepsTopByte) {
  const cv::Mat deep = MakePattern(12, 5, CV_16UC3);
  auto image = DecodeImage(Encode(deep, ".png"));
  ASSERT_TRUE(image.ok()) << image.status();
  cv::Mat expected;
  deep.convertTo(expected, CV_8UC3, 1.0 / 256.0);
  ExpectSameRgb(*image, expected, 1);
}

TEST(DecodeImageTest, PaletteBecomesRgb) {
  auto image = DecodeImage(testing::MakePalettePng(5, 3));
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->width, 5);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) {
      const cv::Vec3b want = testing::PaletteColor(x + y);
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(image->pixels[(y * 5 + x) * 3 + c], want[c]) << x << "," << y;
      }
    }
  }
}

TEST(DecodeImageTest, ExifOrientationIsApplied) {
  // Left half dark, right half bright; orientation 6 rotates 90 degrees
  // clockwise, so the dark half ends up on top.
  cv::Mat mat(16, 32, CV_8UC3, cv::Scalar(20, 20, 20));
  mat(cv::Rect(16, 0, 16, 16)).setTo(cv::Scalar(230, 230, 230));
  auto image =
      DecodeImage(testing::WithExifOrientation(Encode(mat, ".jpg"), 6));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 16);
  EXPECT_EQ(image->height, 32);
  EXPECT_LT(image->pixels[(4 * 16 + 8) * 3], 60);    // top: dark
  EXPECT_GT(image->pixels[(28 * 16 + 8) * 3], 190);  // bottom: bright
}

TEST(DecodeImageTest, CmykJpegBecomesRgb) {
  // Left half no ink, right half full cyan, in the inverted (Adobe)
  // convention that CMYK JPEGs use: 255 = no ink.
  const int w = 32, h = 16;
  std::vector<uint8_t> cmyk(w * h * 4, 255);
  for (int y = 0; y < h; ++y) {
    for (int x = w / 2; x < w; ++x) cmyk[(y * w + x) * 4] = 0;
  }
  auto rgb = DecodeImage(testing::EncodeCmykJpeg(cmyk, w, h));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ASSERT_EQ(rgb->width, w);
  ASSERT_EQ(rgb->height, h);
  auto pixel = [&](int x, int y, int c) {
    return static_cast<int>(rgb->pixels[(y * w + x) * 3 + c]);
  };
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(pixel(4, 8, c), 255, 6) << c;
  EXPECT_NEAR(pixel(28, 8, 0), 0, 6);  // cyan: no red
  EXPECT_NEAR(pixel(28, 8, 1), 255, 6);
  EXPECT_NEAR(pixel(28, 8, 2), 255, 6);
}

TEST(DecodeImageTest, DecompressionBombRefusedBeforeDecoding) {
  std::string png = Encode(MakePattern(8, 8), ".png");
  // IHDR says 70000x70000; the data is tiny, so decoding would fail anyway,
  // but the header check must answer first with the size.
  const uint32_t side = 70000;
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = png[20 + i] = static_cast<char>(side >> (24 - 8 * i));
  }
  auto image = DecodeImage(png);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(image.status().message().find("70000x70000"), std::string::npos);
  EXPECT_NE(image.status().message().find("limit"), std::string::npos);
}

TEST(DecodeImageTest, HugeSidesDoNotOverflow) {
  // Found by fuzz/image_fuzzer.cc: IHDR with both sides 0xFFFFFFFF.
  std::string png = Encode(MakePattern(8, 8), ".png");
  for (int i = 16; i < 24; ++i) png[i] = '\xff';
  auto image = DecodeImage(png);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(image.status().message().find("4294967295x4294967295"),
            std::string::npos)
      << image.status();
}

TEST(DecodeImageTest, PixelLimitIsAnOption) {
  DecodeOptions options;
  options.max_pixels = 100;
  auto image = DecodeImage(Encode(MakePattern(11, 10), ".png"), options);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(DecodeImage(Encode(MakePattern(10, 10), ".png"), options).ok());
}

TEST(DecodeImageTest, TruncatedDataIsRefused) {
  for (const char* ext : {".png", ".jpg", ".webp", ".tiff", ".bmp"}) {
    SCOPED_TRACE(ext);
    const std::string bytes = Encode(MakePattern(64, 64), ext);
    auto image = DecodeImage(bytes.substr(0, bytes.size() / 2));
    EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(DecodeImageTest, CorruptDataIsRefused) {
  std::string png = Encode(MakePattern(64, 64), ".png");
  for (size_t i = 40; i < png.size() - 20; ++i)
    png[i] = static_cast<char>(i * 31);
  EXPECT_EQ(DecodeImage(png).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DecodeImageTest, DemoPhotosDecode) {
  const struct {
    const char* name;
    int width, height;
  } kDemos[] = {{"cityscapes_example.png", 0, 0},
                {"coco_example.jpg", 0, 0},
                {"potsdam_example.png", 0, 0}};
  for (const auto& demo : kDemos) {
    SCOPED_TRACE(demo.name);
    const std::string path = testing::DemoImagePath(demo.name);
    const std::string bytes = testing::ReadBinary(path);
    if (bytes.empty()) GTEST_SKIP() << "demo photos not found at " << path;
    auto image = DecodeImage(bytes);
    ASSERT_TRUE(image.ok()) << image.status();
    const cv::Mat reference = cv::imread(path, cv::IMREAD_COLOR);
    ExpectSameRgb(*image, reference, 0);
  }
}

TEST(RawPixelsTest, ChannelsAndLengthsAreChecked) {
  auto gray = ImageFromRawPixels(2, 1, 1, std::string("\x05\x09", 2));
  ASSERT_TRUE(gray.ok());
  EXPECT_EQ(gray->pixels, (std::vector<uint8_t>{5, 5, 5, 9, 9, 9}));
  auto rgba = ImageFromRawPixels(1, 1, 4, std::string("\x01\x02\x03\x04", 4));
  ASSERT_TRUE(rgba.ok());
  EXPECT_EQ(rgba->pixels, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(ImageFromRawPixels(2, 2, 3, "short").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageFromRawPixels(0, 2, 3, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageFromRawPixels(-3, 2, 3, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageFromRawPixels(2, 2, 2, "12345678").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto huge = ImageFromRawPixels(100000, 100000, 3, "");
  EXPECT_NE(huge.status().message().find("limit"), std::string::npos);
}

}  // namespace
}  // namespace primaps
