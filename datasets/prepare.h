// `primaps-trainer prepare`: an official dataset layout to the project's
// DIR/images + DIR/labels layout (labels as evaluation class ids, 255 =
// ignore), resumable.
#ifndef PRIMAPS_DATASETS_PREPARE_H_
#define PRIMAPS_DATASETS_PREPARE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "datasets/official_layout.h"

namespace primaps {

struct PrepareOptions {
  std::string dataset;  // cityscapes, cocostuff27, potsdam3
  LayoutOptions layout;
  std::string out;
  // Called every few seconds and at the end: a progress line with the items
  // done, the total, the rate and the time left.
  std::function<void(const std::string& line)> progress;
};

struct PrepareReport {
  int64_t images = 0;    // items in the output (written or already there)
  int64_t labelled = 0;  // of which with a label map
  int64_t skipped = 0;   // already complete from an earlier run
};

// Writes OUT/images/<stem>.png|.jpg (PNG and JPEG files are hard-linked or
// copied byte for byte; .mat images are encoded as PNG), OUT/labels/<stem>.png
// (ids mapped to classes) and OUT/dataset.json (dataset, split, class names,
// palette, counts). Every file is written atomically and an item whose image
// and label are both present is skipped, so an interrupted run resumes.
// Errors name the file: unreadable images or .mat files, label maps of
// another size than their image, ids outside the dataset's map.
absl::StatusOr<PrepareReport> PrepareDataset(const PrepareOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_DATASETS_PREPARE_H_
