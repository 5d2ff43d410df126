#include "engine/projected_backbone.h"

#include <utility>

#include "base/status_macros.h"

namespace primaps {

ProjectedBackbone::ProjectedBackbone(std::unique_ptr<Backbone> backbone,
                                     Projection projection)
    : backbone_(std::move(backbone)), projection_(std::move(projection)) {}

absl::StatusOr<std::vector<FeatureMap>> ProjectedBackbone::Extract(
    const std::vector<const NormalizedImage*>& images, const StopCheck* stop) {
  ASSIGN_OR_RETURN(std::vector<FeatureMap> maps,
                   backbone_->Extract(images, stop));
  for (FeatureMap& f : maps) {
    ASSIGN_OR_RETURN(FeatureMap code, ApplyProjection(projection_, f));
    f.code = std::make_shared<const FeatureMap>(std::move(code));
  }
  return maps;
}

}  // namespace primaps
