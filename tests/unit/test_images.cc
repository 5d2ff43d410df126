#include "tests/unit/test_images.h"

#include <zlib.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>
#include <vector>

namespace primaps::testing {
namespace {

void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>(v >> shift));
}

void PutChunk(std::string* out, const std::string& type,
              const std::string& data) {
  PutU32(out, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  out->append(body);
  PutU32(out,
         static_cast<uint32_t>(crc32(
             0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

}  // namespace

cv::Mat MakePattern(int width, int height, int type) {
  cv::Mat mat(height, width, type);
  const int channels = mat.channels();
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        const int v = (x * 7 + y * 13 + c * 61) % 256;
        if (mat.depth() == CV_16U) {
          mat.ptr<uint16_t>(y)[x * channels + c] =
              static_cast<uint16_t>(v * 257 + c);
        } else {
          mat.ptr<uint8_t>(y)[x * channels + c] = static_cast<uint8_t>(v);
        }
      }
    }
  }
  return mat;
}

std::string Encode(const cv::Mat& mat, const std::string& ext) {
  std::vector<uint8_t> buffer;
  std::vector<int> params;
  if (ext == ".webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};  // lossless
  if (ext == ".jpg") params = {cv::IMWRITE_JPEG_QUALITY, 100};
  cv::imencode(ext, mat, buffer, params);
  return std::string(buffer.begin(), buffer.end());
}

cv::Vec3b PaletteColor(int index) {
  static const cv::Vec3b kColors[4] = {
      {255, 0, 0}, {0, 200, 0}, {10, 20, 250}, {90, 90, 90}};
  return kColors[index % 4];
}

std::string MakePalettePng(int width, int height) {
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  PutU32(&ihdr, width);
  PutU32(&ihdr, height);
  ihdr += std::string("\x08\x03\x00\x00\x00", 5);  // 8-bit, palette
  PutChunk(&png, "IHDR", ihdr);
  std::string plte;
  for (int i = 0; i < 4; ++i) {
    for (int c = 0; c < 3; ++c)
      plte.push_back(static_cast<char>(PaletteColor(i)[c]));
  }
  PutChunk(&png, "PLTE", plte);
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    for (int x = 0; x < width; ++x)
      raw.push_back(static_cast<char>((x + y) % 4));
  }
  uLongf size = compressBound(raw.size());
  std::string compressed(size, '\0');
  compress(reinterpret_cast<Bytef*>(compressed.data()), &size,
           reinterpret_cast<const Bytef*>(raw.data()), raw.size());
  compressed.resize(size);
  PutChunk(&png, "IDAT", compressed);
  PutChunk(&png, "IEND", "");
  return png;
}

std::string WithExifOrientation(const std::string& jpeg, int orientation) {
  // TIFF header (big endian), IFD0 with one entry: tag 0x0112 SHORT 1 value.
  std::string tiff("MM\x00\x2a\x00\x00\x00\x08", 8);
  tiff += std::string("\x00\x01", 2);  // one entry
  tiff += std::string("\x01\x12\x00\x03\x00\x00\x00\x01", 8);
  tiff.push_back(0);
  tiff.push_back(static_cast<char>(orientation));
  tiff += std::string("\x00\x00", 2);          // value padding
  tiff += std::string("\x00\x00\x00\x00", 4);  // no next IFD
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  const size_t length = payload.size() + 2;
  std::string segment("\xFF\xE1", 2);
  segment.push_back(static_cast<char>(length >> 8));
  segment.push_back(static_cast<char>(length & 0xFF));
  segment += payload;
  return jpeg.substr(0, 2) + segment + jpeg.substr(2);
}

std::string DemoImagePath(const std::string& name) {
  return std::string(PRIMAPS_SOURCE_DIR) + "/../shared/data/demo/" + name;
}

std::string FixturePath(const std::string& name) {
  return std::string(PRIMAPS_SOURCE_DIR) + "/tests/golden/fixtures/" + name;
}

std::string ReadBinary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string RegionsScene(int seed, int width, int height,
                         const std::string& ext) {
  cv::Mat mat(height, width, CV_8UC3);
  std::mt19937 rng(seed);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int region = y < height / 3 ? 0 : (x < width / 2 ? 1 : 2);
      for (int c = 0; c < 3; ++c) {
        mat.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>(
            (region * 80 + c * 50 + seed * 13) % 200 + rng() % 40);
      }
    }
  }
  return Encode(mat, ext);
}

}  // namespace primaps::testing
