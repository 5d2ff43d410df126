// Shared helpers that build encoded test images in memory.
#ifndef PRIMAPS_TESTS_UNIT_TEST_IMAGES_H_
#define PRIMAPS_TESTS_UNIT_TEST_IMAGES_H_

#include <opencv2/core.hpp>
#include <string>

namespace primaps::testing {

// A deterministic BGR test pattern with distinct rows and columns.
cv::Mat MakePattern(int width, int height, int type = CV_8UC3);

// Encodes with OpenCV; ext is ".png", ".jpg", ".bmp", ".webp" or ".tiff".
std::string Encode(const cv::Mat& mat, const std::string& ext);

// A palette (colour type 3) PNG of width x height whose pixel (x, y) has
// palette index (x + y) % 4, palette colours given by PaletteColor.
std::string MakePalettePng(int width, int height);
cv::Vec3b PaletteColor(int index);  // RGB

// Inserts an APP1 EXIF segment with the given orientation tag after SOI.
std::string WithExifOrientation(const std::string& jpeg, int orientation);

// Path of a file under ../shared/data/demo beside the checkout.
std::string DemoImagePath(const std::string& name);

std::string ReadBinary(const std::string& path);

// A photo-like scene, encoded as `ext`: three regions (a top third, two
// halves below) of seed-dependent colours with seeded noise.
std::string RegionsScene(int seed, int width, int height,
                         const std::string& ext = ".png");

// Path of a committed golden fixture under tests/golden/fixtures.
std::string FixturePath(const std::string& name);

}  // namespace primaps::testing

#endif  // PRIMAPS_TESTS_UNIT_TEST_IMAGES_H_
