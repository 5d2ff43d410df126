// Turns a backbone checkpoint, in any of the layouts users have, into the
// official DINO/DINOv2 key names in float32, checked against the
// architecture.
#ifndef PRIMAPS_ENGINE_BACKBONE_BACKBONE_WEIGHTS_H_
#define PRIMAPS_ENGINE_BACKBONE_BACKBONE_WEIGHTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backbone/vit_config.h"
#include "engine/checkpoint/tensor_record.h"

namespace primaps {

// Reads a .pth (torch.save zip) or .safetensors file, recognized by content.
absl::StatusOr<TensorMap> ReadWeightsFile(const std::string& path);
absl::StatusOr<TensorMap> ParseWeights(absl::string_view bytes);

// Canonicalizes raw tensors for `config`:
//  - strips "module.", "backbone.", "vit." and "dinov2." prefixes (DDP,
//    DINO training wrappers, Hugging Face task models);
//  - maps Hugging Face ViTModel / Dinov2Model names (separate q, k, v are
//    concatenated into qkv);
//  - drops what is not part of the backbone: the DINO projection head
//    ("head.*"), the Hugging Face pooler, DINOv2's mask token;
//  - widens f16/bf16/f64 to f32;
//  - refuses missing, unexpected and mis-shaped tensors, naming each.
absl::StatusOr<TensorMap> CanonicalizeBackboneWeights(TensorMap raw,
                                                      const VitConfig& config);

// The number of positions of the stored position embedding grid (M*M).
absl::StatusOr<int> PositionGridSide(const TensorMap& weights);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_BACKBONE_BACKBONE_WEIGHTS_H_
