#include "engine/reference_checkpoint.h"

#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "engine/backbone/backbone_weights.h"

namespace primaps {
namespace {

constexpr char kBackbonePrefix[] = "net.model.";

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

// The architecture the backbone's tensors describe: the width and patch
// from the patch embedding, DINOv2 from its layer scale, registers from
// their tokens.
absl::StatusOr<VitConfig> ConfigFromShapes(const TensorMap& backbone) {
  const auto embed = backbone.find("patch_embed.proj.weight");
  if (embed == backbone.end() || embed->second.shape.size() != 4) {
    return Invalid(
        "net.model.patch_embed.proj.weight is missing or not 4-D: no ViT "
        "backbone in this checkpoint");
  }
  const int64_t dim = embed->second.shape[0], patch = embed->second.shape[2];
  const char* size = dim == 384 ? "s" : dim == 768 ? "b" : nullptr;
  if (size == nullptr) {
    return Invalid(absl::StrCat("net.model.patch_embed.proj.weight is ",
                                ShapeString(embed->second.shape),
                                ": a ViT of width ", dim,
                                "; DINO and DINOv2 ViT-S (384) and ViT-B "
                                "(768) are known"));
  }
  const bool v2 = backbone.count("blocks.0.ls1.gamma") > 0;
  const bool registers = backbone.count("register_tokens") > 0;
  const std::string name = absl::StrCat(v2 ? "dinov2_vit" : "dino_vit", size,
                                        patch, registers ? "_reg" : "");
  auto config = VitConfigByName(name);
  if (!config.ok()) {
    return Invalid(absl::StrCat("the backbone's tensors describe ", name,
                                ", which is not a known architecture"));
  }
  std::set<int> blocks;
  for (const auto& [key, record] : backbone) {
    int block = 0;
    if (absl::StartsWith(key, "blocks.") &&
        absl::SimpleAtoi(key.substr(7, key.find('.', 7) - 7), &block)) {
      blocks.insert(block);
    }
  }
  if (static_cast<int>(blocks.size()) != config->depth) {
    return Invalid(absl::StrCat("the backbone has ", blocks.size(), " blocks; ",
                                name, " has ", config->depth));
  }
  return config;
}

// A weight-normed 1x1 convolution's weight_v ([K, D, 1, 1] or [K, D]) and
// weight_g ([K, 1, 1, 1] or [K]) under `prefix`.
absl::StatusOr<WeightNormConv> ReadWeightNorm(const TensorMap& tensors,
                                              const std::string& prefix,
                                              int dim, int* classes) {
  const auto v = tensors.find(prefix + ".weight_v");
  const auto g = tensors.find(prefix + ".weight_g");
  if (v == tensors.end() || g == tensors.end()) {
    return Invalid(absl::StrCat("no ", prefix, ".weight_v / ", prefix,
                                ".weight_g in the state dict"));
  }
  const std::vector<int64_t>& vs = v->second.shape;
  const bool v_ok =
      (vs.size() == 4 && vs[2] == 1 && vs[3] == 1) || vs.size() == 2;
  if (!v_ok || vs[1] != dim) {
    return Invalid(absl::StrCat(
        prefix, ".weight_v is ", ShapeString(vs), "; expected [K, ", dim,
        ", 1, 1] for the backbone's ", dim, " channels"));
  }
  const int64_t k = vs[0];
  if (*classes > 0 && k != *classes) {
    return Invalid(absl::StrCat(prefix, ".weight_v has ", k,
                                " classes; the other heads have ", *classes));
  }
  if (g->second.NumElements() != k) {
    return Invalid(absl::StrCat(prefix, ".weight_g is ",
                                ShapeString(g->second.shape), "; expected [", k,
                                ", 1, 1, 1]"));
  }
  *classes = static_cast<int>(k);
  WeightNormConv conv;
  ASSIGN_OR_RETURN(const TensorRecord v32, ToFloat32(v->second));
  ASSIGN_OR_RETURN(const TensorRecord g32, ToFloat32(g->second));
  conv.v = Float32Values(v32);
  conv.g = Float32Values(g32);
  return conv;
}

}  // namespace

absl::StatusOr<SegmentationHead> ParseAnyHeadCheckpoint(
    absl::string_view bytes, absl::string_view expected_backbone,
    int expected_dim) {
  if (!absl::StartsWith(bytes, "PK\x03\x04"))
    return ParseHeadCheckpoint(bytes, expected_backbone, expected_dim);
  ASSIGN_OR_RETURN(PthStateDict state, ReadPthStateDict(bytes));
  if (!IsLightningModelCheckpoint(state)) {
    return Invalid(
        "a torch.save archive that is not the reference's train.py "
        "checkpoint: heads are safetensors files (DESIGN.md section 5) or "
        "such a checkpoint");
  }
  ASSIGN_OR_RETURN(ReferenceModel model, ReadReferenceModel(std::move(state)));
  if (!expected_backbone.empty() && model.head.backbone != expected_backbone) {
    return Invalid(absl::StrCat("the checkpoint's heads read ",
                                model.head.backbone,
                                " features; this server "
                                "runs ",
                                expected_backbone));
  }
  if (expected_dim > 0 && model.head.dim != expected_dim) {
    return Invalid(absl::StrCat("the checkpoint's heads read ", model.head.dim,
                                " channels; expected ", expected_dim));
  }
  return std::move(model.head);
}

int BlockForDinoBlock(const VitConfig& config, int dino_block) {
  if (config.family == VitFamily::kDinoV2 || dino_block <= 1) return -1;
  return config.depth - dino_block;
}

std::string BackboneNameFromOpts(
    const std::map<std::string, std::string>& opts) {
  const auto arch = opts.find("backbone_arch");
  const auto patch = opts.find("backbone_patch");
  if (arch == opts.end() || patch == opts.end()) return "";
  return absl::StrCat(arch->second, patch->second);
}

absl::StatusOr<std::pair<VitConfig, TensorMap>> ReadNetModelBackbone(
    const TensorMap& tensors) {
  TensorMap raw;
  for (const auto& [key, record] : tensors) {
    if (absl::StartsWith(key, kBackbonePrefix))
      raw[key.substr(sizeof(kBackbonePrefix) - 1)] = record;
  }
  ASSIGN_OR_RETURN(const VitConfig config, ConfigFromShapes(raw));
  auto canonical = CanonicalizeBackboneWeights(std::move(raw), config);
  if (!canonical.ok()) {
    return Invalid(absl::StrCat("the backbone under net.model.: ",
                                canonical.status().message()));
  }
  return std::make_pair(config, *std::move(canonical));
}

bool IsLightningModelCheckpoint(const PthStateDict& state) {
  if (state.source != "state_dict") return false;
  for (const auto& [key, record] : state.tensors) {
    if (absl::StartsWith(key, kBackbonePrefix)) return true;
  }
  return false;
}

absl::StatusOr<ReferenceModel> ReadReferenceModel(PthStateDict state) {
  const TensorMap& tensors = state.tensors;
  if (tensors.count("cluster_probe.clusters") > 0 ||
      tensors.count("net.cluster1.0.weight") > 0) {
    return Invalid(
        "this is a STEGO checkpoint (cluster_probe.clusters, net.cluster1.*): "
        "its heads read STEGO's projection of the features; a PriMaPs "
        "checkpoint of the reference's train.py has seghead.weight_g / "
        "seghead.weight_v");
  }
  if (tensors.count("seghead.weight_g") == 0 ||
      tensors.count("seghead.weight_v") == 0) {
    std::vector<std::string> heads;
    for (const auto& [key, record] : tensors) {
      if (!absl::StartsWith(key, kBackbonePrefix) && heads.size() < 8)
        heads.push_back(key);
    }
    return Invalid(absl::StrCat(
        "no seghead.weight_g / seghead.weight_v: not a PriMaPs checkpoint of "
        "the reference's train.py (its other keys: ",
        heads.empty() ? "none" : absl::StrJoin(heads, ", "), ")"));
  }
  ReferenceModel model;
  model.opts = std::move(state.hyper_parameters);
  ASSIGN_OR_RETURN(std::tie(model.config, model.backbone),
                   ReadNetModelBackbone(tensors));
  const std::string named = BackboneNameFromOpts(model.opts);
  if (!named.empty() && named != model.config.name &&
      named + "_reg" != model.config.name) {
    return Invalid(absl::StrCat("hyper_parameters name the backbone ", named,
                                " (backbone_arch, backbone_patch); the "
                                "tensors under net.model. are ",
                                model.config.name));
  }

  const int dim = model.config.dim;
  SegmentationHead& head = model.head;
  head.dim = dim;
  head.backbone = model.config.name;
  ASSIGN_OR_RETURN(head.theta_r,
                   ReadWeightNorm(tensors, "seghead", dim, &head.classes));
  for (const char* prefix :
       {"cluster_probe.ema_model", "cluster_probe.cluster_centers"}) {
    if (tensors.count(absl::StrCat(prefix, ".weight_v")) == 0) continue;
    ASSIGN_OR_RETURN(head.theta_m,
                     ReadWeightNorm(tensors, prefix, dim, &head.classes));
    model.theta_m_from = prefix;
    break;
  }
  if (model.theta_m_from.empty()) {
    return Invalid(
        "no theta_M: neither cluster_probe.ema_model.weight_v (after "
        "PriMaPs-EM) nor cluster_probe.cluster_centers.weight_v (after the "
        "baseline)");
  }
  const auto linear_w = tensors.find("linear_probe.weight");
  const auto linear_b = tensors.find("linear_probe.bias");
  if (linear_w != tensors.end() && linear_b != tensors.end()) {
    const std::vector<int64_t>& ws = linear_w->second.shape;
    if (ws.size() < 2 || ws[0] != head.classes || ws[1] != dim ||
        linear_w->second.NumElements() != int64_t{head.classes} * dim ||
        linear_b->second.NumElements() != head.classes) {
      return Invalid(absl::StrCat(
          "linear_probe.weight is ", ShapeString(ws), " and linear_probe.bias ",
          ShapeString(linear_b->second.shape), "; expected [", head.classes,
          ", ", dim, ", 1, 1] and [", head.classes, "]"));
    }
    ASSIGN_OR_RETURN(const TensorRecord w32, ToFloat32(linear_w->second));
    ASSIGN_OR_RETURN(const TensorRecord b32, ToFloat32(linear_b->second));
    head.linear_weight = Float32Values(w32);
    head.linear_bias = Float32Values(b32);
  }
  if (const auto n = model.opts.find("num_classes"); n != model.opts.end()) {
    int classes = 0;
    if (absl::SimpleAtoi(n->second, &classes) && classes != head.classes) {
      return Invalid(absl::StrCat("hyper_parameters say num_classes ", classes,
                                  "; seghead has ", head.classes));
    }
  }
  head.extra_metadata["source"] = "the reference's train.py checkpoint";
  head.extra_metadata["theta_m_from"] = model.theta_m_from;
  // The same checks as any head file (finite values, non-zero directions).
  auto parsed = ParseHeadCheckpoint(SerializeHeadCheckpoint(head),
                                    head.backbone, head.dim);
  if (!parsed.ok()) {
    return Invalid(absl::StrCat("the heads: ", parsed.status().message()));
  }

  if (const auto n = model.opts.find("dino_block"); n != model.opts.end()) {
    if (!absl::SimpleAtoi(n->second, &model.dino_block) ||
        model.dino_block < 1 || model.dino_block > model.config.depth) {
      return Invalid(absl::StrCat("hyper_parameters say dino_block ", n->second,
                                  "; expected 1..", model.config.depth));
    }
  }
  model.block = BlockForDinoBlock(model.config, model.dino_block);
  // The heads read that block's features: a server serving another block
  // refuses them (ModelRegistry).
  model.head.extra_metadata["dino_block"] = absl::StrCat(model.dino_block);
  return model;
}

}  // namespace primaps
