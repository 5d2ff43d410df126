// Fuzzes the torch.save reader: zip archive, restricted unpickler, tensor
// materialization, and weight canonicalization.
#include <cstddef>
#include <cstdint>

#include "engine/backbone/backbone_weights.h"
#include "engine/checkpoint/pickle_reader.h"
#include "engine/checkpoint/pth_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)primaps::ParsePickle(bytes);
  (void)primaps::ReadPthStateDict(bytes);
  (void)primaps::ParseWeights(bytes);
  return 0;
}
