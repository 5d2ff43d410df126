// The student view of PriMaPs-EM's M-step, as the reference makes it
// (primaps_modules/transforms.py, Compose with student_augs), on the
// normalized float image: Gaussian blur (kernel 21, sigma in [0.1, 2])
// always; then with probability 1/2 the colour-jitter branch (jitter with
// p = 0.3: brightness, contrast, saturation 0.9-1.1 and hue +-0.1 in a random
// order) and otherwise the grayscale branch (p = 0.1). The operations are
// torchvision's tensor ones on the normalized values, so their clamps to
// [0, 1] apply there, as in the reference. The horizontal flip (p = 0.5) is
// drawn here but applied by the caller to both views, labels and masks.
#ifndef PRIMAPS_TRAINER_AUGMENT_H_
#define PRIMAPS_TRAINER_AUGMENT_H_

#include <array>
#include <random>
#include <vector>

#include "engine/image/image.h"

namespace primaps {

// One image's random draws, so that a test can give them explicitly.
struct StudentDraws {
  bool flip = false;
  float sigma = 1.f;                        // blur, in [0.1, 2]
  bool jitter_branch = true;                // else the grayscale branch
  bool jitter = false;                      // the branch's p = 0.3 draw
  std::array<int, 4> order = {0, 1, 2, 3};  // 0 brightness ... 3 hue
  float brightness = 1.f, contrast = 1.f, saturation = 1.f;  // [0.9, 1.1]
  float hue = 0.f;                                           // [-0.1, 0.1]
  bool grayscale = false;  // the branch's p = 0.1 draw
};

StudentDraws DrawStudent(std::mt19937* rng);

// A normalized channels-first RGB image (3 x height x width).
struct FloatImage {
  int height = 0;
  int width = 0;
  std::vector<float> data;
};

// ToTensor and the ImageNet normalization of 8-bit pixels.
FloatImage Normalize(const RgbImage& image);

// Blur, then the jitter or grayscale branch, per `draws` (not the flip).
FloatImage StudentAugment(const FloatImage& image, const StudentDraws& draws);

// Mirrors left to right.
LabelMap FlipHorizontal(const LabelMap& labels);
RgbImage FlipHorizontal(const RgbImage& image);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_AUGMENT_H_
