// The reference implementation's released models: one PyTorch Lightning
// `.ckpt` of train.py's UnsupervisedSegmenter holds a whole model, the
// backbone and the heads (DESIGN.md section 5). Read without Python:
//
//   state_dict   net.model.*                          the DINO / DINOv2 ViT
//                seghead.weight_g / weight_v          theta_R
//                cluster_probe.ema_model.weight_g/_v  theta_M after PriMaPs-EM
//                cluster_probe.cluster_centers.*      theta_M after the
//                baseline linear_probe.weight / bias           the linear probe
//   hyper_parameters["opts"]                          backbone_arch,
//                backbone_patch, dino_block, num_classes, ...
//
// theta_M is what test.py scores: it rebuilds cluster_probe as a plain
// weight-normed 1x1 convolution and loads the EMA's weight_g / weight_v into
// it, so it applies to the same (unnormalized) features as theta_R, which is
// exactly this project's head format.
#ifndef PRIMAPS_ENGINE_REFERENCE_CHECKPOINT_H_
#define PRIMAPS_ENGINE_REFERENCE_CHECKPOINT_H_

#include <map>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backbone/vit_config.h"
#include "engine/checkpoint/pth_reader.h"
#include "engine/segmentation_head.h"

namespace primaps {

struct ReferenceModel {
  // The architecture, from the tensor shapes (checked against the opts).
  VitConfig config;
  // Canonical backbone weights (official key names, float32).
  TensorMap backbone;
  // theta_R, theta_M and the linear probe; backbone = config.name.
  SegmentationHead head;
  // Which block's output the heads read, as VitBackboneOptions::block: the
  // reference's dino_block n is block depth - n for DINO
  // (get_intermediate_layers(x, n)[-n]) and always the last block for DINOv2
  // (its get_intermediate_layers(x, n)[n - 1]).
  int block = -1;
  int dino_block = 1;
  // Where theta_M came from: "cluster_probe.ema_model" or
  // "cluster_probe.cluster_centers".
  std::string theta_m_from;
  // The checkpoint's options (PthStateDict::hyper_parameters).
  std::map<std::string, std::string> opts;
};

// The ViT under net.model. (a Lightning model's `self.net.model`): its
// architecture from the tensor shapes and its canonical weights.
absl::StatusOr<std::pair<VitConfig, TensorMap>> ReadNetModelBackbone(
    const TensorMap& tensors);

// True when `state` came from a Lightning checkpoint whose state dict holds a
// backbone under net.model. (train.py's, or another model built the same way,
// such as STEGO's: ReadReferenceModel tells them apart).
bool IsLightningModelCheckpoint(const PthStateDict& state);

// The model in train.py's checkpoint. Errors are INVALID_ARGUMENT naming the
// missing or mis-shaped key, or what the file is instead (a STEGO checkpoint,
// a checkpoint without seghead).
absl::StatusOr<ReferenceModel> ReadReferenceModel(PthStateDict state);

// A head from either file a head can come in: this project's head
// safetensors (ParseHeadCheckpoint), or the reference's train.py .ckpt, whose
// heads are taken (and whose backbone must then be `expected_backbone` when
// that is not empty). Errors name what the bytes are instead.
absl::StatusOr<SegmentationHead> ParseAnyHeadCheckpoint(
    absl::string_view bytes, absl::string_view expected_backbone,
    int expected_dim);

// VitBackboneOptions::block for the reference's dino_block n (1 = the last
// block): depth - n for DINO, the last block for DINOv2 (see
// ReferenceModel::block).
int BlockForDinoBlock(const VitConfig& config, int dino_block);

// The backbone id ("dino_vits8", "dinov2_vitb14", ...) that the reference's
// opts name (backbone_arch "dino_vits" and backbone_patch 8), or "" when
// they name none.
std::string BackboneNameFromOpts(
    const std::map<std::string, std::string>& opts);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_REFERENCE_CHECKPOINT_H_
