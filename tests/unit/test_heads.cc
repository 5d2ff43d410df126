#include "tests/unit/test_heads.h"

#include <random>

#include "engine/backbone/builtin_backbone.h"
#include "engine/segmentation_head.h"

namespace primaps::testing {

std::string RandomBuiltinHeadBytes(int classes, float gain, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  SegmentationHead head;
  head.classes = classes;
  head.dim = kBuiltinFeatureDim;
  head.backbone = "builtin";
  for (WeightNormConv* conv : {&head.theta_m, &head.theta_r}) {
    conv->v.resize(classes * head.dim);
    for (float& v : conv->v) v = normal(rng);
    conv->g.assign(classes, gain);
  }
  return SerializeHeadCheckpoint(head);
}

}  // namespace primaps::testing
