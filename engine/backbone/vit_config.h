// Architecture descriptions of the DINO and DINOv2 ViT backbones.
#ifndef PRIMAPS_ENGINE_BACKBONE_VIT_CONFIG_H_
#define PRIMAPS_ENGINE_BACKBONE_VIT_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primaps {

enum class VitFamily { kDino, kDinoV2 };

struct VitConfig {
  std::string name;  // backbone id, e.g. "dino_vits8"
  VitFamily family = VitFamily::kDino;
  int patch_size = 8;
  int dim = 384;
  int depth = 12;
  int heads = 6;
  int mlp_hidden = 1536;
  int num_register_tokens = 0;
  float layer_norm_eps = 1e-6f;
  bool layer_scale = false;  // DINOv2 ls1/ls2
  // Position embeddings are interpolated bicubically to the patch grid. With
  // an offset > 0 the official code passes scale_factor = (g + offset) / M
  // (DINO always, DINOv2 by default); with 0 it passes the output size
  // (DINOv2 register models, which also use antialiasing).
  float interpolate_offset = 0.1f;
  bool interpolate_antialias = false;
  // DINOv2's patch embedding asserts that the image is a patch multiple;
  // DINO's convolution silently drops the remainder.
  bool require_patch_multiple = false;
};

// The official architectures: dino_vits8, dino_vits16, dino_vitb8,
// dino_vitb16, dinov2_vits14, dinov2_vitb14, dinov2_vits14_reg,
// dinov2_vitb14_reg.
absl::StatusOr<VitConfig> VitConfigByName(absl::string_view name);
std::vector<std::string> VitConfigNames();

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_BACKBONE_VIT_CONFIG_H_
