// Fuzzes header parsing and decoding of untrusted image bytes.
#include <cstddef>
#include <cstdint>

#include "engine/image/image_decode.h"
#include "engine/image/image_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)primaps::ReadImageHeader(bytes);
  primaps::DecodeOptions options;
  options.max_pixels = 1 << 20;  // keep allocations small while fuzzing
  (void)primaps::DecodeImage(bytes, options);
  return 0;
}
