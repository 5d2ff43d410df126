// Images and label maps stored in MATLAB .mat files (Potsdam), read with
// libmatio. MATLAB stores arrays column-major; these return row-major
// images and label maps, as scipy.io.loadmat does.
#ifndef PRIMAPS_DATASETS_MAT_FILE_H_
#define PRIMAPS_DATASETS_MAT_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/image/image.h"

namespace primaps {

// Variable `variable` (rows x cols x channels, channels >= 3) as an RGB
// image: the first three channels (Potsdam's fourth is infrared). uint8 is
// taken as is; floating point in [0, 1] becomes uint8 as the reference's
// to_pil_image does it (x * 255, truncated).
absl::StatusOr<RgbImage> ReadMatImage(const std::string& path,
                                      const std::string& variable);

// Variable `variable` (rows x cols) of integer ids in [0, 255]; any integer
// class, or floating point holding whole numbers.
absl::StatusOr<LabelMap> ReadMatLabels(const std::string& path,
                                       const std::string& variable);

}  // namespace primaps

#endif  // PRIMAPS_DATASETS_MAT_FILE_H_
