#include "engine/backbone/vit_config.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace primaps {
namespace {

VitConfig Dino(const char* name, int patch, int dim, int heads) {
  VitConfig c;
  c.name = name;
  c.family = VitFamily::kDino;
  c.patch_size = patch;
  c.dim = dim;
  c.heads = heads;
  c.mlp_hidden = 4 * dim;
  return c;
}

VitConfig DinoV2(const char* name, int dim, int heads, int registers) {
  VitConfig c = Dino(name, 14, dim, heads);
  c.family = VitFamily::kDinoV2;
  c.layer_scale = true;
  c.require_patch_multiple = true;
  c.num_register_tokens = registers;
  if (registers > 0) {
    // dinov2/hub/backbones.py builds the register models with
    // interpolate_antialias=True, interpolate_offset=0.0.
    c.interpolate_offset = 0.f;
    c.interpolate_antialias = true;
  }
  return c;
}

std::vector<VitConfig> AllConfigs() {
  return {Dino("dino_vits8", 8, 384, 6),
          Dino("dino_vits16", 16, 384, 6),
          Dino("dino_vitb8", 8, 768, 12),
          Dino("dino_vitb16", 16, 768, 12),
          DinoV2("dinov2_vits14", 384, 6, 0),
          DinoV2("dinov2_vitb14", 768, 12, 0),
          DinoV2("dinov2_vits14_reg", 384, 6, 4),
          DinoV2("dinov2_vitb14_reg", 768, 12, 4)};
}

}  // namespace

absl::StatusOr<VitConfig> VitConfigByName(absl::string_view name) {
  for (const VitConfig& c : AllConfigs()) {
    if (c.name == name) return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backbone \"", name,
                   "\"; known: ", absl::StrJoin(VitConfigNames(), ", ")));
}

std::vector<std::string> VitConfigNames() {
  std::vector<std::string> names;
  for (const VitConfig& c : AllConfigs()) names.push_back(c.name);
  return names;
}

}  // namespace primaps
