// A dataset on disk as the trainer reads it: where its images, masks and
// ground truth are, and the crops and label maps it trains and validates on.
#ifndef PRIMAPS_TRAINER_TRAINING_DATA_H_
#define PRIMAPS_TRAINER_TRAINING_DATA_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"
#include "engine/image/preprocess.h"
#include "trainer/augment.h"

namespace primaps {

// Where a dataset's images are, and its precomputed PriMaPs masks if any.
struct DatasetDirs {
  std::string images;
  // The reference's precomputed layout (imgs/, pseudos/, gts/, as
  // `primaps-client label --layout=reference` writes it): pseudo labels at
  // the training crop, mask k as id k, background 255. Empty: the server
  // computes the masks.
  std::string masks;
  // Ground truth, when the dataset has it: labels/ at the original size, or
  // gts/ at the training crop in the precomputed layout.
  std::string labels;
  bool labels_cropped = false;
};

// images/ and labels/, or the reference's precomputed imgs/, pseudos/, gts/.
DatasetDirs FindDatasetDirs(const std::string& dir);

// The file names in `images_dir`, sorted.
std::vector<std::string> ListImages(const std::string& images_dir);

// The square crop the features describe: short side `resize`, center crop,
// as 8-bit RGB (the server gets exactly these pixels). As the reference:
// training images through Pillow's antialiased resize, validation images
// through torch's bilinear one.
// With torch's filter the crop is float: `tensor` receives the normalized
// image (what the backbone must see, sent as is) and the returned 8-bit
// pixels are its de-normalization (for the CRF).
absl::StatusOr<RgbImage> Crop(const std::string& path, int resize,
                              ResizeFilter filter, FloatImage* tensor);

// The ground truth of training image `name` at its training crop (as the
// reference's training transforms: Pillow's nearest), or an empty map when
// the image has none.
absl::StatusOr<LabelMap> TrainingTruth(const DatasetDirs& dirs,
                                       const std::string& name, int resize);

// A precomputed pseudo-label file as a mask map (0 = background).
absl::StatusOr<LabelMap> PrecomputedMasks(const std::string& path,
                                          const RgbImage& crop);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_TRAINING_DATA_H_
