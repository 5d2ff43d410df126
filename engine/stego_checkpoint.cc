#include "engine/stego_checkpoint.h"

#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/reference_checkpoint.h"

namespace primaps {
namespace {

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

// A 1x1 convolution's weight [out, in, 1, 1] (or [out, in]) and bias [out]
// under `prefix`; `in` must be `in_dim`, `out` is returned in `*out_dim`
// (and must match it when it is already set).
absl::Status ReadConv(const TensorMap& tensors, const std::string& prefix,
                      int in_dim, int* out_dim, std::vector<float>* weight,
                      std::vector<float>* bias) {
  const auto w = tensors.find(prefix + ".weight");
  const auto b = tensors.find(prefix + ".bias");
  if (w == tensors.end() || b == tensors.end()) {
    return Invalid(absl::StrCat("no ", prefix, ".weight / ", prefix,
                                ".bias in the state dict"));
  }
  const std::vector<int64_t>& s = w->second.shape;
  const bool shape_ok =
      (s.size() == 4 && s[2] == 1 && s[3] == 1) || s.size() == 2;
  if (!shape_ok || s[1] != in_dim || (*out_dim > 0 && s[0] != *out_dim)) {
    return Invalid(
        absl::StrCat(prefix, ".weight is ", ShapeString(s), "; expected [",
                     *out_dim > 0 ? absl::StrCat(*out_dim) : std::string("dim"),
                     ", ", in_dim, ", 1, 1]"));
  }
  if (b->second.NumElements() != s[0]) {
    return Invalid(absl::StrCat(prefix, ".bias is ",
                                ShapeString(b->second.shape), "; expected [",
                                s[0], "]"));
  }
  *out_dim = static_cast<int>(s[0]);
  ASSIGN_OR_RETURN(const TensorRecord w32, ToFloat32(w->second));
  ASSIGN_OR_RETURN(const TensorRecord b32, ToFloat32(b->second));
  *weight = Float32Values(w32);
  *bias = Float32Values(b32);
  return absl::OkStatus();
}

// The cfg fields that must agree with what is served, when present.
absl::Status CheckConfig(const std::map<std::string, std::string>& opts,
                         const VitConfig& config) {
  auto field = [&](const char* key) -> std::string {
    const auto it = opts.find(absl::StrCat("cfg.", key));
    return it == opts.end() ? "" : it->second;
  };
  if (const std::string t = field("projection_type");
      !t.empty() && t != "nonlinear") {
    return Invalid(absl::StrCat(
        "cfg.projection_type is ", t,
        "; only STEGO's linear + nonlinear projection (nonlinear) is served"));
  }
  if (const std::string t = field("dino_feat_type");
      !t.empty() && t != "feat") {
    return Invalid(absl::StrCat("cfg.dino_feat_type is ", t,
                                "; only the block's output features (feat) "
                                "are served"));
  }
  if (const std::string t = field("model_type"); !t.empty()) {
    const std::string want = config.dim == 384 ? "vit_small" : "vit_base";
    if (t != want) {
      return Invalid(absl::StrCat("cfg.model_type is ", t,
                                  "; the tensors under net.model. are ",
                                  config.name));
    }
  }
  if (const std::string p = field("dino_patch_size");
      !p.empty() && p != absl::StrCat(config.patch_size)) {
    return Invalid(absl::StrCat("cfg.dino_patch_size is ", p,
                                "; the tensors under net.model. are ",
                                config.name));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsStegoCheckpoint(const PthStateDict& state) {
  if (state.source == "hp") return true;
  return IsLightningModelCheckpoint(state) &&
         (state.tensors.count("net.cluster1.0.weight") > 0 ||
          state.tensors.count("cluster_probe.clusters") > 0);
}

absl::StatusOr<StegoModel> ReadStegoModel(PthStateDict state,
                                          const std::string& file) {
  const TensorMap& tensors = state.tensors;
  const bool hp = state.source == "hp";
  StegoModel model;
  model.opts = std::move(state.hyper_parameters);
  ASSIGN_OR_RETURN(std::tie(model.config, model.backbone),
                   ReadNetModelBackbone(tensors));
  RETURN_IF_ERROR(CheckConfig(model.opts, model.config));
  if (tensors.count("net.cluster2.0.weight") == 0 &&
      tensors.count("net.cluster1.0.weight") > 0) {
    return Invalid(
        "no net.cluster2.*: a linear projection (projection_type linear); "
        "only STEGO's linear + nonlinear projection is served");
  }
  Projection& p = model.projection;
  p.kind = hp ? "hp" : "stego";
  p.source = file;
  p.in_dim = model.config.dim;
  RETURN_IF_ERROR(ReadConv(tensors, "net.cluster1.0", p.in_dim, &p.out_dim,
                           &p.linear_w, &p.linear_b));
  int hidden = p.in_dim;
  RETURN_IF_ERROR(ReadConv(tensors, "net.cluster2.0", p.in_dim, &hidden,
                           &p.hidden_w, &p.hidden_b));
  RETURN_IF_ERROR(ReadConv(tensors, "net.cluster2.2", p.in_dim, &p.out_dim,
                           &p.out_w, &p.out_b));
  RETURN_IF_ERROR(ValidateProjection(p));
  p.digest = ProjectionDigest(p);
  if (const auto d = model.opts.find("cfg.dim"); d != model.opts.end()) {
    int dim = 0;
    if (absl::SimpleAtoi(d->second, &dim) && dim != p.out_dim) {
      return Invalid(absl::StrCat("cfg.dim is ", dim,
                                  "; net.cluster1.0.weight projects to ",
                                  p.out_dim));
    }
  }

  const auto clusters = tensors.find("cluster_probe.clusters");
  if (clusters == tensors.end()) {
    return Invalid("no cluster_probe.clusters in the state dict");
  }
  const std::vector<int64_t>& cs = clusters->second.shape;
  if (cs.size() != 2 || cs[1] != p.out_dim || cs[0] < 1 || cs[0] > 254) {
    return Invalid(absl::StrCat("cluster_probe.clusters is ", ShapeString(cs),
                                "; expected [K, ", p.out_dim,
                                "] for the projection's ", p.out_dim,
                                " channels (net.cluster1.0.weight)"));
  }
  SegmentationHead& head = model.head;
  head.classes = static_cast<int>(cs[0]);
  head.dim = p.out_dim;
  head.backbone = model.config.name;
  ASSIGN_OR_RETURN(const TensorRecord c32, ToFloat32(clusters->second));
  head.theta_r = {Float32Values(c32), std::vector<float>(head.classes, 1.f)};
  head.theta_m = head.theta_r;
  if (const auto n = model.opts.find("n_classes"); n != model.opts.end()) {
    int classes = 0;
    if (absl::SimpleAtoi(n->second, &classes) && classes != head.classes) {
      return Invalid(absl::StrCat("hyper_parameters say n_classes ", classes,
                                  "; cluster_probe.clusters has ",
                                  head.classes));
    }
  }
  if (tensors.count("linear_probe.weight") > 0) {
    int classes = head.classes;
    RETURN_IF_ERROR(ReadConv(tensors, "linear_probe", p.out_dim, &classes,
                             &head.linear_weight, &head.linear_bias));
  }
  head.extra_metadata["source"] = hp ? "HP's checkpoint" : "STEGO's checkpoint";
  head.extra_metadata["theta_m_from"] = "cluster_probe.clusters";
  head.extra_metadata["dino_block"] = "1";
  head.extra_metadata["projection"] = p.kind;
  head.extra_metadata["projection_digest"] = p.digest;
  auto parsed = ParseHeadCheckpoint(SerializeHeadCheckpoint(head),
                                    head.backbone, head.dim);
  if (!parsed.ok()) {
    return Invalid(absl::StrCat("the heads: ", parsed.status().message()));
  }
  return model;
}

}  // namespace primaps
