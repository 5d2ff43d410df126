#include "engine/image/image_header.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::Encode;
using ::primaps::testing::MakePattern;

struct FormatCase {
  const char* ext;
  ImageFormat format;
};

class HeaderFormatTest : public ::testing::TestWithParam<FormatCase> {};

TEST_P(HeaderFormatTest, ReadsDeclaredSize) {
  const std::string bytes = Encode(MakePattern(37, 23), GetParam().ext);
  auto header = ReadImageHeader(bytes);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->format, GetParam().format);
  EXPECT_EQ(header->width, 37);
  EXPECT_EQ(header->height, 23);
}

INSTANTIATE_TEST_SUITE_P(
    AllFormats, HeaderFormatTest,
    ::testing::Values(FormatCase{".png", ImageFormat::kPng},
                      FormatCase{".jpg", ImageFormat::kJpeg},
                      FormatCase{".bmp", ImageFormat::kBmp},
                      FormatCase{".webp", ImageFormat::kWebp},
                      FormatCase{".tiff", ImageFormat::kTiff}),
    [](const ::testing::TestParamInfo<FormatCase>& info) {
      return std::string(info.param.ext + 1);
    });

TEST(ImageHeaderTest, LossyWebpSize) {
  std::vector<uint8_t> buffer;
  cv::imencode(".webp", MakePattern(50, 31), buffer,
               {cv::IMWRITE_WEBP_QUALITY, 80});
  auto header = ReadImageHeader(std::string(buffer.begin(), buffer.end()));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->width, 50);
  EXPECT_EQ(header->height, 31);
}

TEST(ImageHeaderTest, EmptyIsRefused) {
  auto header = ReadImageHeader("");
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(header.status().message().find("empty"), std::string::npos);
}

TEST(ImageHeaderTest, UnknownFormatIsRefused) {
  auto header = ReadImageHeader("GIF89a and then some bytes");
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(header.status().message().find("unsupported"), std::string::npos);
}

TEST(ImageHeaderTest, TruncatedHeadersAreRefused) {
  for (const char* ext : {".png", ".jpg", ".bmp", ".webp", ".tiff"}) {
    const std::string bytes = Encode(MakePattern(8, 8), ext);
    // Keep just the magic number: every format's size field is past it.
    auto header = ReadImageHeader(bytes.substr(0, 4));
    EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument)
        << ext;
  }
}

TEST(ImageHeaderTest, ZeroSizeIsRefused) {
  std::string png = Encode(MakePattern(8, 8), ".png");
  png[16] = png[17] = png[18] = png[19] = 0;  // IHDR width = 0
  auto header = ReadImageHeader(png);
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(header.status().message().find("0x8"), std::string::npos)
      << header.status();
}

}  // namespace
}  // namespace primaps
