// One table per preprocessing option: the names people type (server flags
// and config files, HTTP query parameters, client flags, the label job's
// manifest) for each primaps.v1 enum. Every entry point parses through here,
// so a name means the same everywhere.
#ifndef PRIMAPS_PROTO_OPTION_NAMES_H_
#define PRIMAPS_PROTO_OPTION_NAMES_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "primaps/v1/types.pb.h"

namespace primaps {

// Each Parse* maps a name to its enum; "" is the UNSPECIFIED value (the
// server's default). Anything else is INVALID_ARGUMENT naming `option`
// (e.g. "--crop" or "query parameter crop"), the value and the choices.
absl::StatusOr<v1::CropMode> ParseCropMode(absl::string_view option,
                                           absl::string_view name);
absl::StatusOr<v1::ResizeFilter> ParseResizeFilter(absl::string_view option,
                                                   absl::string_view name);
absl::StatusOr<v1::OutputSize> ParseOutputSize(absl::string_view option,
                                               absl::string_view name);
absl::StatusOr<v1::CrfResolution> ParseCrfResolution(absl::string_view option,
                                                     absl::string_view name);

// The name of a value ("" for UNSPECIFIED and unknown values).
absl::string_view CropModeName(v1::CropMode value);
absl::string_view ResizeFilterName(v1::ResizeFilter value);
absl::string_view OutputSizeName(v1::OutputSize value);
absl::string_view CrfResolutionName(v1::CrfResolution value);

}  // namespace primaps

#endif  // PRIMAPS_PROTO_OPTION_NAMES_H_
