// Fuzzes the safetensors reader and the head checkpoint validation on it.
#include <cstddef>
#include <cstdint>

#include "engine/checkpoint/safetensors.h"
#include "engine/segmentation_head.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)primaps::ParseSafetensors(bytes);
  (void)primaps::ParseHeadCheckpoint(bytes, "", 0);
  return 0;
}
