// A backbone followed by a projection (STEGO's or HP's): each feature map
// carries the projection's code, batched with the backbone's forward.
#ifndef PRIMAPS_ENGINE_PROJECTED_BACKBONE_H_
#define PRIMAPS_ENGINE_PROJECTED_BACKBONE_H_

#include <memory>

#include "engine/backbone/backbone.h"
#include "engine/projection.h"

namespace primaps {

class ProjectedBackbone : public Backbone {
 public:
  ProjectedBackbone(std::unique_ptr<Backbone> backbone, Projection projection);

  const std::string& id() const override { return backbone_->id(); }
  int patch_size() const override { return backbone_->patch_size(); }
  int feature_dim() const override { return backbone_->feature_dim(); }
  bool requires_patch_multiple() const override {
    return backbone_->requires_patch_multiple();
  }
  const char* precision() const override { return backbone_->precision(); }
  int head_dim() const override { return projection_.out_dim; }
  const Projection& projection() const { return projection_; }

  absl::StatusOr<std::vector<FeatureMap>> Extract(
      const std::vector<const NormalizedImage*>& images,
      const StopCheck* stop = nullptr) override;

 private:
  const std::unique_ptr<Backbone> backbone_;
  const Projection projection_;
};

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_PROJECTED_BACKBONE_H_
