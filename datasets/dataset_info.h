// The datasets of the paper's protocol: their class names, palettes and the
// maps from their official label ids to the evaluation classes.
#ifndef PRIMAPS_DATASETS_DATASET_INFO_H_
#define PRIMAPS_DATASETS_DATASET_INFO_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/image/image.h"

namespace primaps {

struct DatasetInfo {
  std::string name;  // "cityscapes", "cocostuff27", "potsdam3"
  std::vector<std::string> class_names;
  // One RGB colour per class (the reference's visualization palettes).
  std::vector<std::array<uint8_t, 3>> palette;
  // Official label id -> class id, or kIgnoreLabel; kInvalidId marks ids
  // that the official files never hold (a file with one is refused).
  std::array<int16_t, 256> id_to_class;
};

// Marks an official id that cannot occur in a well-formed label file.
inline constexpr int16_t kInvalidId = -1;

// The dataset called `name`; NotFound lists the known names.
absl::StatusOr<const DatasetInfo*> FindDataset(absl::string_view name);

// Maps a label file's official ids to class ids. `file` names the file in
// the error when an id is invalid.
absl::StatusOr<LabelMap> MapLabelIds(const DatasetInfo& info,
                                     const LabelMap& official,
                                     absl::string_view file);

}  // namespace primaps

#endif  // PRIMAPS_DATASETS_DATASET_INFO_H_
