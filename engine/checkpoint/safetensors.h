// The safetensors file format: 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the bytes.
#ifndef PRIMAPS_ENGINE_CHECKPOINT_SAFETENSORS_H_
#define PRIMAPS_ENGINE_CHECKPOINT_SAFETENSORS_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/checkpoint/tensor_record.h"

namespace primaps {

struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Parses and validates a whole file held in memory: header bounds, JSON,
// dtypes, shapes, and that each byte range lies in the file and matches its
// shape. Every error names the tensor at fault.
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes);

// Serializes tensors (in name order, 8-byte aligned header) and metadata.
std::string SerializeSafetensors(const SafetensorsFile& file);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CHECKPOINT_SAFETENSORS_H_
