#include "engine/segmentation_head.h"

#include <openssl/evp.h>

#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/crf/dense_crf.h"
#include "engine/image/channel_maps.h"
#include "engine/image/preprocess.h"

namespace primaps {
namespace {

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("head checkpoint: ", what));
}

// Reads a float tensor with one of the accepted shapes into `out`.
absl::Status ReadTensor(const TensorMap& tensors, const std::string& name,
                        const std::vector<std::vector<int64_t>>& shapes,
                        std::vector<float>* out) {
  const auto it = tensors.find(name);
  if (it == tensors.end())
    return Invalid(absl::StrCat("missing tensor ", name));
  bool shape_ok = false;
  for (const auto& s : shapes) shape_ok |= it->second.shape == s;
  if (!shape_ok) {
    return Invalid(absl::StrCat(name, " has shape ",
                                ShapeString(it->second.shape), ", expected ",
                                ShapeString(shapes[0])));
  }
  auto f32 = ToFloat32(it->second);
  if (!f32.ok())
    return Invalid(absl::StrCat(name, ": ", f32.status().message()));
  *out = Float32Values(*f32);
  for (size_t i = 0; i < out->size(); ++i) {
    if (!std::isfinite((*out)[i]))
      return Invalid(
          absl::StrCat(name, " has a non-finite value at index ", i));
  }
  return absl::OkStatus();
}

absl::Status ReadConv(const TensorMap& tensors, const std::string& prefix,
                      int64_t k, int64_t d, WeightNormConv* conv) {
  RETURN_IF_ERROR(
      ReadTensor(tensors, prefix + ".v", {{k, d}, {k, d, 1, 1}}, &conv->v));
  RETURN_IF_ERROR(
      ReadTensor(tensors, prefix + ".g", {{k}, {k, 1, 1, 1}}, &conv->g));
  for (int64_t c = 0; c < k; ++c) {
    double norm = 0;
    for (int64_t i = 0; i < d; ++i) norm += std::pow(conv->v[c * d + i], 2);
    if (norm == 0)
      return Invalid(absl::StrCat(prefix, ".v row ", c, " is all zeros"));
  }
  return absl::OkStatus();
}

int64_t MetadataInt(const std::map<std::string, std::string>& m,
                    const std::string& key, int64_t fallback) {
  const auto it = m.find(key);
  int64_t v;
  return it != m.end() && absl::SimpleAtoi(it->second, &v) ? v : fallback;
}

}  // namespace

absl::StatusOr<SegmentationHead> ParseHeadCheckpoint(
    absl::string_view bytes, absl::string_view expected_backbone,
    int expected_dim) {
  auto file = ParseSafetensors(bytes);
  if (!file.ok()) return Invalid(file.status().message());
  const auto v = file->tensors.find("theta_r.v");
  if (v == file->tensors.end()) return Invalid("missing tensor theta_r.v");
  if (v->second.shape.size() != 2 && v->second.shape.size() != 4) {
    return Invalid(absl::StrCat("theta_r.v has shape ",
                                ShapeString(v->second.shape),
                                ", expected [K, D]"));
  }
  const int64_t k = v->second.shape[0], d = v->second.shape[1];
  if (k < 1 || k > 254)
    return Invalid(absl::StrCat(k, " classes; 1 to 254 are supported"));
  if (d < 1) return Invalid("feature dimension is 0");
  SegmentationHead head;
  head.classes = static_cast<int>(k);
  head.dim = static_cast<int>(d);
  RETURN_IF_ERROR(ReadConv(file->tensors, "theta_m", k, d, &head.theta_m));
  RETURN_IF_ERROR(ReadConv(file->tensors, "theta_r", k, d, &head.theta_r));
  if (file->tensors.count("linear.weight") ||
      file->tensors.count("linear.bias")) {
    RETURN_IF_ERROR(ReadTensor(file->tensors, "linear.weight",
                               {{k, d}, {k, d, 1, 1}}, &head.linear_weight));
    RETURN_IF_ERROR(
        ReadTensor(file->tensors, "linear.bias", {{k}}, &head.linear_bias));
  }
  std::map<std::string, std::string> meta = file->metadata;
  head.backbone = meta.count("backbone") ? meta["backbone"] : "";
  const int64_t meta_classes = MetadataInt(meta, "classes", k);
  const int64_t meta_dim = MetadataInt(meta, "feature_dim", d);
  if (meta_classes != k || meta_dim != d) {
    return Invalid(absl::StrCat("metadata says ", meta_classes,
                                " classes of dim ", meta_dim, ", tensors are ",
                                k, " x ", d));
  }
  if (!expected_backbone.empty() && head.backbone != expected_backbone) {
    return Invalid(absl::StrCat("trained on backbone \"", head.backbone,
                                "\", this server runs \"", expected_backbone,
                                "\""));
  }
  if (expected_dim > 0 && d != expected_dim) {
    return Invalid(absl::StrCat("feature dim is ", d, ", the backbone gives ",
                                expected_dim));
  }
  head.step = MetadataInt(meta, "step", 0);
  for (const char* key : {"backbone", "classes", "feature_dim", "step"})
    meta.erase(key);
  head.extra_metadata = std::move(meta);
  return head;
}

std::string SerializeHeadCheckpoint(const SegmentationHead& head) {
  SafetensorsFile file;
  const int64_t k = head.classes, d = head.dim;
  file.tensors["theta_m.v"] = MakeFloat32({k, d}, head.theta_m.v);
  file.tensors["theta_m.g"] = MakeFloat32({k}, head.theta_m.g);
  file.tensors["theta_r.v"] = MakeFloat32({k, d}, head.theta_r.v);
  file.tensors["theta_r.g"] = MakeFloat32({k}, head.theta_r.g);
  if (!head.linear_weight.empty()) {
    file.tensors["linear.weight"] = MakeFloat32({k, d}, head.linear_weight);
    file.tensors["linear.bias"] = MakeFloat32({k}, head.linear_bias);
  }
  file.metadata = head.extra_metadata;
  file.metadata["backbone"] = head.backbone;
  file.metadata["classes"] = absl::StrCat(k);
  file.metadata["feature_dim"] = absl::StrCat(d);
  file.metadata["step"] = absl::StrCat(head.step);
  return SerializeSafetensors(file);
}

std::vector<float> HeadScores(const SegmentationHead& head, HeadKind kind,
                              const FeatureMap& features) {
  const WeightNormConv& conv =
      kind == HeadKind::kClusterProbe ? head.theta_m : head.theta_r;
  const int k = head.classes, d = head.dim;
  const size_t n = static_cast<size_t>(features.height) * features.width;
  std::vector<float> scores(static_cast<size_t>(k) * n, 0.f);
  for (int c = 0; c < k; ++c) {
    const float* v = &conv.v[static_cast<size_t>(c) * d];
    double norm = 0;
    for (int i = 0; i < d; ++i) norm += static_cast<double>(v[i]) * v[i];
    const float scale = conv.g[c] / static_cast<float>(std::sqrt(norm));
    float* out = &scores[c * n];
    for (int i = 0; i < d; ++i) {
      const float w = v[i] * scale;
      const float* f = &features.data[static_cast<size_t>(i) * n];
      for (size_t p = 0; p < n; ++p) out[p] += w * f[p];
    }
  }
  return scores;
}

LabelMap HeadClassMap(const SegmentationHead& head, HeadKind kind,
                      const FeatureMap& features, int out_h, int out_w) {
  const std::vector<float> grid = HeadScores(head, kind, features);
  const std::vector<float> up =
      ResizeBilinearWindow(grid.data(), head.classes, features.height,
                           features.width, out_h, out_w, 0, 0, out_h, out_w);
  return ArgmaxLabels(up, head.classes, out_w, out_h);
}

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(),
             nullptr);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

}  // namespace primaps
