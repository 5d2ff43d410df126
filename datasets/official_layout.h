// The official on-disk layouts of Cityscapes, COCO-Stuff and Potsdam, walked
// one item at a time (a split of 100k images is never held in memory).
#ifndef PRIMAPS_DATASETS_OFFICIAL_LAYOUT_H_
#define PRIMAPS_DATASETS_OFFICIAL_LAYOUT_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "datasets/dataset_info.h"

namespace primaps {

struct LayoutOptions {
  std::string root;   // the dataset's root directory
  std::string split;  // "train", "val", ... (per dataset, see ForEachItem)
  // COCO-Stuff: the curated image list (one image id per line); default
  // ROOT/curated/<split>2017/Coco164kFull_Stuff_Coarse_7.txt.
  std::string list_file;
};

struct DatasetItem {
  std::string stem;        // output name, no extension
  std::string image_path;  // .png, .jpg or .mat
  std::string label_path;  // official ids; empty when the split has none
};

// Calls `visit` for each item of the split in a fixed order and stops at the
// first error. Layouts:
//   cityscapes:  leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and
//                gtFine/<split>/<city>/<stem>_gtFine_labelIds.png
//                (labels when gtFine/<split> exists)
//   cocostuff27: the list's ids; images in images/<split>2017/ or
//                <split>2017/ (<id>.jpg), labels in annotations/<split>2017/,
//                stuffthingmaps_trainval2017/<split>2017/ or
//                stuffthingmaps/<split>2017/ (<id>.png)
//   potsdam3:    split lists labelled_train.txt (train), labelled_test.txt
//                (val), unlabelled_train.txt (unlabelled_train), both
//                labelled lists (train+val), all.txt (all); images
//                imgs/<id>.mat, labels gt/<id>.mat where present
absl::Status ForEachItem(
    const DatasetInfo& info, const LayoutOptions& options,
    const std::function<absl::Status(const DatasetItem&)>& visit);

}  // namespace primaps

#endif  // PRIMAPS_DATASETS_OFFICIAL_LAYOUT_H_
