// Torch-free tensors as they come out of checkpoint files.
#ifndef PRIMAPS_ENGINE_CHECKPOINT_TENSOR_RECORD_H_
#define PRIMAPS_ENGINE_CHECKPOINT_TENSOR_RECORD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primaps {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

size_t DTypeSize(DType dtype);
// Safetensors spelling: "F32", "F16", "BF16", ...
const char* DTypeName(DType dtype);
absl::StatusOr<DType> DTypeFromName(absl::string_view name);

// A dense, row-major, little-endian tensor.
struct TensorRecord {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string data;  // data.size() == NumElements() * DTypeSize(dtype)

  int64_t NumElements() const;
};

// Tensors by name, in name order.
using TensorMap = std::map<std::string, TensorRecord>;

// Element count of `shape`, or an error when a dimension is negative or the
// count overflows.
absl::StatusOr<int64_t> CheckedNumElements(const std::vector<int64_t>& shape);

// "[1, 785, 384]"
std::string ShapeString(const std::vector<int64_t>& shape);

// Converts any floating point record to float32 (f16 and bf16 widened
// exactly). Integer and bool records are refused.
absl::StatusOr<TensorRecord> ToFloat32(const TensorRecord& record);

// Float32 record from values.
TensorRecord MakeFloat32(std::vector<int64_t> shape,
                         const std::vector<float>& values);

// The float32 values of a float32 record.
std::vector<float> Float32Values(const TensorRecord& record);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CHECKPOINT_TENSOR_RECORD_H_
