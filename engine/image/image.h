// Plain image and label-map containers shared by the engine, server and client.
#ifndef PRIMAPS_ENGINE_IMAGE_IMAGE_H_
#define PRIMAPS_ENGINE_IMAGE_IMAGE_H_

#include <cstdint>
#include <vector>

namespace primaps {

// An 8-bit RGB image, row-major, interleaved (pixels.size() == 3*width*height).
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
};

// The label id meaning "no label" in every label map the project writes.
inline constexpr uint8_t kIgnoreLabel = 255;

// One 8-bit label per pixel, row-major (labels.size() == width*height).
struct LabelMap {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> labels;
};

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_IMAGE_H_
