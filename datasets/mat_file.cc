#include "datasets/mat_file.h"

#include <matio.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"

namespace primaps {
namespace {

struct MatCloser {
  void operator()(mat_t* m) const { Mat_Close(m); }
};
struct VarFreer {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};
using MatFile = std::unique_ptr<mat_t, MatCloser>;
using MatVar = std::unique_ptr<matvar_t, VarFreer>;

// Opens `path` and reads `variable` with its data; a real, numeric array.
absl::StatusOr<MatVar> ReadVariable(const std::string& path,
                                    const std::string& variable) {
  MatFile file(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a readable MATLAB .mat file"));
  }
  MatVar var(Mat_VarRead(file.get(), variable.c_str()));
  if (var == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": has no variable \"", variable, "\""));
  }
  if (var->isComplex || var->data == nullptr || var->rank < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": variable \"", variable, "\" is not a real numeric array"));
  }
  return var;
}

// Element `index` (column-major) of a numeric array as a double, or NaN
// for classes that are not numeric.
double Element(const matvar_t& v, size_t index) {
  switch (v.class_type) {
    case MAT_C_DOUBLE:
      return static_cast<const double*>(v.data)[index];
    case MAT_C_SINGLE:
      return static_cast<const float*>(v.data)[index];
    case MAT_C_INT8:
      return static_cast<const int8_t*>(v.data)[index];
    case MAT_C_UINT8:
      return static_cast<const uint8_t*>(v.data)[index];
    case MAT_C_INT16:
      return static_cast<const int16_t*>(v.data)[index];
    case MAT_C_UINT16:
      return static_cast<const uint16_t*>(v.data)[index];
    case MAT_C_INT32:
      return static_cast<const int32_t*>(v.data)[index];
    case MAT_C_UINT32:
      return static_cast<const uint32_t*>(v.data)[index];
    case MAT_C_INT64:
      return static_cast<double>(static_cast<const int64_t*>(v.data)[index]);
    case MAT_C_UINT64:
      return static_cast<double>(static_cast<const uint64_t*>(v.data)[index]);
    default:
      return std::nan("");
  }
}

bool IsFloating(const matvar_t& v) {
  return v.class_type == MAT_C_DOUBLE || v.class_type == MAT_C_SINGLE;
}

}  // namespace

absl::StatusOr<RgbImage> ReadMatImage(const std::string& path,
                                      const std::string& variable) {
  auto var = ReadVariable(path, variable);
  if (!var.ok()) return var.status();
  const matvar_t& v = **var;
  if (v.rank != 3 || v.dims[2] < 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": \"", variable, "\" has rank ", v.rank,
        "; an image is rows x cols x channels with at least 3 channels"));
  }
  const size_t rows = v.dims[0], cols = v.dims[1];
  if (rows == 0 || cols == 0 || rows > 1 << 15 || cols > 1 << 15) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": \"", variable, "\" is ", rows, "x", cols, " pixels"));
  }
  RgbImage image{static_cast<int>(cols), static_cast<int>(rows),
                 std::vector<uint8_t>(rows * cols * 3)};
  const bool floating = IsFloating(v);
  for (size_t c = 0; c < 3; ++c) {
    for (size_t x = 0; x < cols; ++x) {
      for (size_t y = 0; y < rows; ++y) {
        double value = Element(v, y + rows * (x + cols * c));
        // to_pil_image on a float tensor: x * 255 in the tensor's own
        // precision, then truncated.
        if (v.class_type == MAT_C_SINGLE) {
          value = static_cast<float>(value) * 255.f;
        } else if (floating) {
          value *= 255.0;
        }
        if (!(value >= 0.0 && value < 256.0)) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ": \"", variable, "\" value at (row ", y, ", col ", x,
              ", channel ", c, ") is outside the 8-bit range",
              floating ? " (floating-point images must be in [0, 1])" : ""));
        }
        image.pixels[(y * cols + x) * 3 + c] = static_cast<uint8_t>(value);
      }
    }
  }
  return image;
}

absl::StatusOr<LabelMap> ReadMatLabels(const std::string& path,
                                       const std::string& variable) {
  auto var = ReadVariable(path, variable);
  if (!var.ok()) return var.status();
  const matvar_t& v = **var;
  size_t planes = 1;
  for (int d = 2; d < v.rank; ++d) planes *= v.dims[d];
  if (planes != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"", variable, "\" has ", planes,
                     " channels; a label map has one"));
  }
  const size_t rows = v.dims[0], cols = v.dims[1];
  LabelMap labels{static_cast<int>(cols), static_cast<int>(rows),
                  std::vector<uint8_t>(rows * cols)};
  for (size_t x = 0; x < cols; ++x) {
    for (size_t y = 0; y < rows; ++y) {
      const double id = Element(v, y + rows * x);
      if (!(id >= 0 && id <= 255 && id == std::floor(id))) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": \"", variable, "\" at (row ", y, ", col ", x,
                         ") is ", id, ", not a label id in [0, 255]"));
      }
      labels.labels[y * cols + x] = static_cast<uint8_t>(id);
    }
  }
  return labels;
}

}  // namespace primaps
