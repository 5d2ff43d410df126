// The student view of PriMaPs-EM's M-step (DESIGN.md section 2): Gaussian
// blur with sigma in [0.1, 2]; then colour jitter (brightness, contrast,
// saturation, hue, each 0.1) with p = 0.3, or grayscale with p = 0.1;
// horizontal flip with p = 0.5 (the caller flips labels and masks too).
#ifndef PRIMAPS_TRAINER_AUGMENT_H_
#define PRIMAPS_TRAINER_AUGMENT_H_

#include <random>

#include "engine/image/image.h"

namespace primaps {

struct StudentView {
  RgbImage image;
  bool flipped = false;
};

StudentView StudentAugment(const RgbImage& image, std::mt19937* rng);

// Mirrors a label map left to right.
LabelMap FlipHorizontal(const LabelMap& labels);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_AUGMENT_H_
