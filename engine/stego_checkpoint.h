// STEGO's checkpoints (the "+SotA+PriMaPs" rows start from them): a PyTorch
// Lightning .ckpt of LitUnsupervisedSegmenter (STEGO src/train_segmentation.py)
// holds a whole model, read without Python:
//
//   state_dict  net.model.*                       the DINO ViT
//               net.cluster1.0.weight / bias      the projection's linear
//               net.cluster2.{0,2}.weight / bias  and non-linear branches
//               cluster_probe.clusters            K x dim cluster centres
//               linear_probe.weight / bias        on the code
//               train_cluster_probe.*, decoder.*  (training only; unused)
//   hyper_parameters  n_classes, and cfg: an OmegaConf DictConfig
//               (model_type, dino_patch_size, dim, projection_type,
//               dino_feat_type), read as inert data
//
// HP's checkpoints (its save_checkpoint dict) hold the same modules:
// net_model_state_dict (model.*, cluster1.*, cluster2.*, and the training's
// ema_model1/2.*), cluster_model_state_dict["clusters"],
// linear_model_state_dict; PthStateDict names them as above.
//
// The heads read the code: theta_R and theta_M both start as the cluster
// centres with gain 1, so that a weight-normed head's argmax is STEGO's
// cosine prediction.
#ifndef PRIMAPS_ENGINE_STEGO_CHECKPOINT_H_
#define PRIMAPS_ENGINE_STEGO_CHECKPOINT_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backbone/vit_config.h"
#include "engine/checkpoint/pth_reader.h"
#include "engine/projection.h"
#include "engine/segmentation_head.h"

namespace primaps {

struct StegoModel {
  VitConfig config;
  TensorMap backbone;  // canonical names, float32
  Projection projection;
  // theta_R = theta_M = the cluster centres (gain 1), the linear probe;
  // dim = the code's; metadata names the projection and its digest.
  SegmentationHead head;
  std::map<std::string, std::string> opts;  // hyper_parameters, cfg.*
};

// True for a Lightning checkpoint holding STEGO's projection or cluster
// probe.
bool IsStegoCheckpoint(const PthStateDict& state);

// The model in STEGO's checkpoint `file`. Errors are INVALID_ARGUMENT
// naming the missing or mis-shaped key, or the unsupported setting
// (projection_type other than nonlinear, dino_feat_type other than feat).
absl::StatusOr<StegoModel> ReadStegoModel(PthStateDict state,
                                          const std::string& file);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_STEGO_CHECKPOINT_H_
