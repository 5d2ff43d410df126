// The feature extractor interface the server and trainer use. Torch-free, so
// that only the implementations pay LibTorch's compile time.
#ifndef PRIMAPS_ENGINE_BACKBONE_BACKBONE_H_
#define PRIMAPS_ENGINE_BACKBONE_BACKBONE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/stop_check.h"
#include "engine/image/preprocess.h"

namespace primaps {

// Dense features on the patch grid, channels first: data[(c*height + y)*width +
// x].
struct FeatureMap {
  int dim = 0;
  int height = 0;
  int width = 0;
  std::vector<float> data;
  // With a projection (STEGO, HP: engine/projection.h): its code on the same
  // grid, which the heads read; PriMaPs reads `data`. Null otherwise.
  std::shared_ptr<const FeatureMap> code;
};

// What the heads read: the code when there is one, else the features.
inline const FeatureMap& HeadInput(const FeatureMap& features) {
  return features.code != nullptr ? *features.code : features;
}

class Backbone {
 public:
  virtual ~Backbone() = default;

  // The backbone id reported to clients, e.g. "dino_vits8".
  virtual const std::string& id() const = 0;
  virtual int patch_size() const = 0;
  virtual int feature_dim() const = 0;
  // Whether images must have sides that are multiples of the patch size
  // (DINOv2); others take any size and drop the remainder.
  virtual bool requires_patch_multiple() const { return false; }
  // The number format of the forward pass: "fp32", "bf16" or "fp16".
  virtual const char* precision() const { return "fp32"; }
  // The channels the heads read: the projection's code when there is one.
  virtual int head_dim() const { return feature_dim(); }

  // Features of a batch of preprocessed images that all have the same size.
  // The caller keeps ownership of the images. Safe to call from several
  // threads; calls are serialized internally where the device needs it.
  // `stop` (may be null) is polled between the model's steps (a ViT's
  // blocks): a stopped call returns its status.
  virtual absl::StatusOr<std::vector<FeatureMap>> Extract(
      const std::vector<const NormalizedImage*>& images,
      const StopCheck* stop = nullptr) = 0;
};

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_BACKBONE_BACKBONE_H_
