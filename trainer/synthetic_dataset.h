// A synthetic segmentation dataset: K classes with distinct colour and
// texture statistics in random layouts (Voronoi cells), images plus
// ground-truth labels, fully determined by the seed. Used by the trainer's
// tests and the README tutorial.
#ifndef PRIMAPS_TRAINER_SYNTHETIC_DATASET_H_
#define PRIMAPS_TRAINER_SYNTHETIC_DATASET_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/image/image.h"

namespace primaps {

struct SyntheticDatasetOptions {
  int classes = 3;
  int images = 32;
  int width = 160;
  int height = 120;
  // Voronoi cells per image (each takes a random class).
  int cells = 6;
  uint32_t seed = 1;
};

// One image and its labels (class ids 0..K-1).
void SyntheticImage(const SyntheticDatasetOptions& options, int index,
                    RgbImage* image, LabelMap* labels);

// Writes <dir>/images/NNNNN.png and <dir>/labels/NNNNN.png.
absl::Status WriteSyntheticDataset(const std::string& dir,
                                   const SyntheticDatasetOptions& options);

// The same images as a miniature Cityscapes split in the official layout
// (for the tutorial and its test): <root>/leftImg8bit/<split>/<city>/
// <city>_NNNNNN_000019_leftImg8bit.png and gtFine/.../..._gtFine_labelIds.png,
// two cities, class k stored as Cityscapes label id k + 7 (at most 27
// classes), so that `primaps-trainer prepare` maps it back to k.
absl::Status WriteSyntheticCityscapes(const std::string& root,
                                      const std::string& split,
                                      const SyntheticDatasetOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_SYNTHETIC_DATASET_H_
