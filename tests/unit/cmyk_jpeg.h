// Encodes CMYK JPEGs for the decoder tests (OpenCV only writes RGB/grey).
#ifndef PRIMAPS_TESTS_UNIT_CMYK_JPEG_H_
#define PRIMAPS_TESTS_UNIT_CMYK_JPEG_H_

#include <cstdint>
#include <string>
#include <vector>

namespace primaps::testing {

// A 4-component JPEG of width x height from interleaved CMYK samples, with
// the Adobe marker libjpeg writes for CMYK (as Photoshop files have).
std::string EncodeCmykJpeg(const std::vector<uint8_t>& cmyk, int width,
                           int height);

}  // namespace primaps::testing

#endif  // PRIMAPS_TESTS_UNIT_CMYK_JPEG_H_
