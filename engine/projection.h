// A projection of backbone features to the "code" that STEGO's and HP's
// heads read (STEGO src/modules.py DinoFeaturizer, HP's DinoFeaturizer):
//
//   code = cluster1(f) + cluster2(f)
//   cluster1 = 1x1 conv D -> dim
//   cluster2 = 1x1 conv D -> D, ReLU, 1x1 conv D -> dim
//
// on the normed last-block patch features f (the features PriMaPs reads).
// Applied in eval mode: STEGO's Dropout2d, which its code leaves active at
// inference, is not applied (docs/datasets.md).
#ifndef PRIMAPS_ENGINE_PROJECTION_H_
#define PRIMAPS_ENGINE_PROJECTION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backbone/backbone.h"

namespace primaps {

struct Projection {
  int in_dim = 0;   // D, the backbone's channels
  int out_dim = 0;  // dim, the code's channels
  // Row-major weights of the three 1x1 convolutions and their biases.
  std::vector<float> linear_w, linear_b;  // out_dim x in_dim, out_dim
  std::vector<float> hidden_w, hidden_b;  // in_dim x in_dim, in_dim
  std::vector<float> out_w, out_b;        // out_dim x in_dim, out_dim
  // "stego" or "hp": which layout it was read from.
  std::string kind;
  // The file it came from, and the SHA-256 of its weights (heads trained on
  // this projection name it).
  std::string source;
  std::string digest;
};

// Checks the shapes of the weights against in_dim and out_dim.
absl::Status ValidateProjection(const Projection& projection);

// The SHA-256 (hex) of the weights, in the order of the struct.
std::string ProjectionDigest(const Projection& projection);

// The code on the same grid (out_dim x h x w), in float32.
absl::StatusOr<FeatureMap> ApplyProjection(const Projection& projection,
                                           const FeatureMap& features);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_PROJECTION_H_
