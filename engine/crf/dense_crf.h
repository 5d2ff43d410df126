// Fully connected CRF with Potts compatibilities and mean-field inference
// (Kraehenbuehl & Koltun 2011), filtered with the permutohedral lattice. It
// reproduces the reference library's (densecrf / pydensecrf) arithmetic as
// DESIGN.md section 2 describes it:
//   U = -log(clip(prob, 1e-5, 1));  Q = softmax(-U)
//   repeat: Q = softmax(-U + sum_k w_k * n_k * L_k(n_k * Q))
// with n_k = 1 / sqrt(L_k(1) + 1e-20) (symmetric normalization) and a
// pixel's own contribution left in.
#ifndef PRIMAPS_ENGINE_CRF_DENSE_CRF_H_
#define PRIMAPS_ENGINE_CRF_DENSE_CRF_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "base/stop_check.h"
#include "engine/image/image.h"

namespace primaps {

struct DenseCrfOptions {
  int iterations = 10;
  // Gaussian (smoothness) kernel on pixel position.
  float gaussian_sxy = 1.f;
  float gaussian_weight = 3.f;
  // Bilateral (appearance) kernel on position and RGB.
  float bilateral_sxy = 67.f;
  float bilateral_srgb = 3.f;
  float bilateral_weight = 4.f;
  // Probabilities are clipped to [prob_clip, 1] before taking the log.
  float prob_clip = 1e-5f;
  // Polled between the lattices' builds and in the mean field; may be null.
  const StopCheck* stop = nullptr;
};

// Runs the CRF on `probs`, laid out label-major (num_labels x H x W, each
// pixel's values summing to 1), for the 8-bit RGB `image` of the same size.
// Returns the final marginals Q in the same layout.
absl::StatusOr<std::vector<float>> DenseCrfInference(
    const RgbImage& image, const std::vector<float>& probs, int num_labels,
    const DenseCrfOptions& options = {});

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CRF_DENSE_CRF_H_
