// Encoding label maps as 8-bit PNGs and drawing colour overlays.
#ifndef PRIMAPS_ENGINE_IMAGE_LABEL_IMAGE_H_
#define PRIMAPS_ENGINE_IMAGE_LABEL_IMAGE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/image/image.h"

namespace primaps {

// Single-channel 8-bit PNG; 255 stays 255 (ignore).
absl::StatusOr<std::string> EncodeLabelPng(const LabelMap& labels);

// Reads a label PNG back; refuses anything that is not one 8-bit channel.
absl::StatusOr<LabelMap> DecodeLabelPng(absl::string_view png);

// Encodes an RGB image as PNG.
absl::StatusOr<std::string> EncodeRgbPng(const RgbImage& image);

// The fixed colour of each label id (the PASCAL VOC bit-interleaved palette);
// the same id always gets the same colour in every overlay.
std::array<uint8_t, 3> LabelColor(uint8_t label);

// Blends `image` with the palette colour of each pixel's label:
// out = (1 - alpha) * image + alpha * colour; pixels labelled 255 are left as
// they are. A label map of another size is scaled with nearest neighbour.
absl::StatusOr<RgbImage> RenderOverlay(const RgbImage& image,
                                       const LabelMap& labels,
                                       float alpha = 0.5f);

// `overlay` with a legend panel on its right: one row per label present in
// `labels` (the overlay's size), largest share first, with its colour,
// `name(label)` and its share of the pixels; the rows that do not fit are
// summarized in a last row. The overlay's own pixels are unchanged.
absl::StatusOr<RgbImage> AddLegend(
    const RgbImage& overlay, const LabelMap& labels,
    const std::function<std::string(uint8_t)>& name);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_LABEL_IMAGE_H_
