// Fuzzes request validation: arbitrary bytes parsed as an ImageRequest,
// converted and validated as the server does, and the image (encoded or
// raw) decoded under a small pixel limit.
#include <cstddef>
#include <cstdint>

#include "engine/image/image_decode.h"
#include "primaps/v1/service.pb.h"
#include "server/proto_convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  primaps::v1::ImageRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto converted =
      primaps::ToPipelineRequest(primaps::Task::kPseudoLabel, request);
  if (!converted.ok()) return 0;
  primaps::DecodeOptions options;
  options.max_pixels = 1 << 20;
  if (converted->raw_channels > 0) {
    (void)primaps::ImageFromRawPixels(
        converted->raw_width, converted->raw_height, converted->raw_channels,
        converted->raw_pixels, options);
  } else {
    (void)primaps::DecodeImage(converted->encoded, options);
  }
  return 0;
}
