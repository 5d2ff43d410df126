#include "proto/option_names.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace primaps {
namespace {

template <typename Enum>
struct Choice {
  const char* name;
  Enum value;
};

constexpr Choice<v1::CropMode> kCropModes[] = {
    {"center", v1::CROP_MODE_CENTER},
    {"full", v1::CROP_MODE_FULL},
};
constexpr Choice<v1::ResizeFilter> kResizeFilters[] = {
    {"antialias", v1::RESIZE_FILTER_ANTIALIAS},
    {"bilinear", v1::RESIZE_FILTER_BILINEAR},
};
constexpr Choice<v1::OutputSize> kOutputSizes[] = {
    {"processed", v1::OUTPUT_SIZE_PROCESSED},
    {"original", v1::OUTPUT_SIZE_ORIGINAL},
};
constexpr Choice<v1::CrfResolution> kCrfResolutions[] = {
    {"processed", v1::CRF_RESOLUTION_PROCESSED},
    {"original", v1::CRF_RESOLUTION_ORIGINAL},
};

template <typename Enum, size_t N>
absl::StatusOr<Enum> Parse(const Choice<Enum> (&table)[N],
                           absl::string_view option, absl::string_view name) {
  if (name.empty()) return static_cast<Enum>(0);  // UNSPECIFIED
  std::string names;
  for (const Choice<Enum>& choice : table) {
    if (name == choice.name) return choice.value;
    absl::StrAppend(&names, names.empty() ? "" : " or ", choice.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(option, " is \"", name, "\", expected ", names));
}

template <typename Enum, size_t N>
absl::string_view Name(const Choice<Enum> (&table)[N], Enum value) {
  for (const Choice<Enum>& choice : table) {
    if (value == choice.value) return choice.name;
  }
  return "";
}

}  // namespace

absl::StatusOr<v1::CropMode> ParseCropMode(absl::string_view option,
                                           absl::string_view name) {
  return Parse(kCropModes, option, name);
}
absl::StatusOr<v1::ResizeFilter> ParseResizeFilter(absl::string_view option,
                                                   absl::string_view name) {
  return Parse(kResizeFilters, option, name);
}
absl::StatusOr<v1::OutputSize> ParseOutputSize(absl::string_view option,
                                               absl::string_view name) {
  return Parse(kOutputSizes, option, name);
}
absl::StatusOr<v1::CrfResolution> ParseCrfResolution(absl::string_view option,
                                                     absl::string_view name) {
  return Parse(kCrfResolutions, option, name);
}

absl::string_view CropModeName(v1::CropMode value) {
  return Name(kCropModes, value);
}
absl::string_view ResizeFilterName(v1::ResizeFilter value) {
  return Name(kResizeFilters, value);
}
absl::string_view OutputSizeName(v1::OutputSize value) {
  return Name(kOutputSizes, value);
}
absl::string_view CrfResolutionName(v1::CrfResolution value) {
  return Name(kCrfResolutions, value);
}

}  // namespace primaps
