#include "engine/backbone/backbone_weights.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "engine/checkpoint/pth_reader.h"
#include "engine/checkpoint/safetensors.h"

namespace primaps {
namespace {

using Shape = std::vector<int64_t>;

bool StripPrefix(std::string* key) {
  for (const char* prefix : {"module.", "backbone.", "vit.", "dinov2."}) {
    if (absl::StartsWith(*key, prefix)) {
      key->erase(0, std::string(prefix).size());
      return true;
    }
  }
  return false;
}

bool IsDropped(const std::string& key) {
  return absl::StartsWith(key, "head.") || absl::StartsWith(key, "pooler.") ||
         key == "mask_token";
}

// Concatenates records along dimension 0; row-major data makes this a byte
// concatenation.
absl::StatusOr<TensorRecord> ConcatDim0(
    const std::vector<const TensorRecord*>& parts, const std::string& name) {
  TensorRecord out = *parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    const TensorRecord& p = *parts[i];
    if (p.dtype != out.dtype || p.shape.size() != out.shape.size() ||
        !std::equal(p.shape.begin() + 1, p.shape.end(),
                    out.shape.begin() + 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "query/key/value tensors of ", name, " differ in shape or dtype"));
    }
    out.shape[0] += p.shape[0];
    out.data += p.data;
  }
  return out;
}

// Hugging Face ViTModel (facebook/dino-*) and Dinov2Model (facebook/dinov2-*)
// names to the official ones.
absl::StatusOr<TensorMap> MapHuggingFaceKeys(TensorMap hf) {
  TensorMap out;
  const std::vector<std::pair<std::string, std::string>> kRenames = {
      {"embeddings.cls_token", "cls_token"},
      {"embeddings.mask_token", "mask_token"},
      {"embeddings.register_tokens", "register_tokens"},
      {"embeddings.position_embeddings", "pos_embed"},
      {"embeddings.patch_embeddings.projection.", "patch_embed.proj."},
      {"layernorm.", "norm."},
  };
  const std::vector<std::pair<std::string, std::string>> kBlockRenames = {
      {"attention.output.dense.", "attn.proj."},
      {"layernorm_before.", "norm1."},  // ViTModel
      {"layernorm_after.", "norm2."},
      {"intermediate.dense.", "mlp.fc1."},
      {"output.dense.", "mlp.fc2."},
      {"norm1.", "norm1."},  // Dinov2Model
      {"norm2.", "norm2."},
      {"mlp.fc1.", "mlp.fc1."},
      {"mlp.fc2.", "mlp.fc2."},
      {"layer_scale1.lambda1", "ls1.gamma"},
      {"layer_scale2.lambda1", "ls2.gamma"},
  };
  // block index -> "weight"/"bias" -> q, k, v
  std::map<std::string, std::map<std::string, std::map<char, TensorRecord>>>
      qkv;
  for (auto& [key, record] : hf) {
    bool done = false;
    for (const auto& [from, to] : kRenames) {
      if (absl::StartsWith(key, from)) {
        out[to + key.substr(from.size())] = std::move(record);
        done = true;
        break;
      }
    }
    if (done) continue;
    if (!absl::StartsWith(key, "encoder.layer.")) {
      out[key] = std::move(record);  // reported as unexpected later
      continue;
    }
    const std::string rest = key.substr(std::string("encoder.layer.").size());
    const size_t dot = rest.find('.');
    const std::string block = rest.substr(0, dot);
    const std::string tail =
        dot == std::string::npos ? "" : rest.substr(dot + 1);
    const std::string kAttn = "attention.attention.";
    if (absl::StartsWith(tail, kAttn)) {
      const std::string which = tail.substr(kAttn.size());  // query.weight, ...
      const size_t d = which.find('.');
      const std::string part = which.substr(0, d);
      const std::string param =
          d == std::string::npos ? "" : which.substr(d + 1);
      if (part == "query" || part == "key" || part == "value") {
        qkv[block][param][part[0]] = std::move(record);
        continue;
      }
    }
    std::string mapped;
    for (const auto& [from, to] : kBlockRenames) {
      if (absl::StartsWith(tail, from)) {
        mapped = to + tail.substr(from.size());
        break;
      }
    }
    out[mapped.empty() ? key : absl::StrCat("blocks.", block, ".", mapped)] =
        std::move(record);
  }
  for (auto& [block, params] : qkv) {
    for (auto& [param, parts] : params) {
      const std::string name =
          absl::StrCat("blocks.", block, ".attn.qkv.", param);
      if (parts.size() != 3) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": Hugging Face layout lacks one of query/key/value"));
      }
      ASSIGN_OR_RETURN(
          out[name], ConcatDim0({&parts['q'], &parts['k'], &parts['v']}, name));
    }
  }
  return out;
}

std::map<std::string, Shape> ExpectedShapes(const VitConfig& c,
                                            int64_t positions) {
  const int64_t d = c.dim, h = c.mlp_hidden, p = c.patch_size;
  std::map<std::string, Shape> s = {
      {"cls_token", {1, 1, d}},
      {"pos_embed", {1, positions + 1, d}},
      {"patch_embed.proj.weight", {d, 3, p, p}},
      {"patch_embed.proj.bias", {d}},
      {"norm.weight", {d}},
      {"norm.bias", {d}},
  };
  if (c.num_register_tokens > 0)
    s["register_tokens"] = {1, c.num_register_tokens, d};
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = absl::StrCat("blocks.", i, ".");
    s[b + "norm1.weight"] = {d};
    s[b + "norm1.bias"] = {d};
    s[b + "attn.qkv.weight"] = {3 * d, d};
    s[b + "attn.qkv.bias"] = {3 * d};
    s[b + "attn.proj.weight"] = {d, d};
    s[b + "attn.proj.bias"] = {d};
    s[b + "norm2.weight"] = {d};
    s[b + "norm2.bias"] = {d};
    s[b + "mlp.fc1.weight"] = {h, d};
    s[b + "mlp.fc1.bias"] = {h};
    s[b + "mlp.fc2.weight"] = {d, h};
    s[b + "mlp.fc2.bias"] = {d};
    if (c.layer_scale) {
      s[b + "ls1.gamma"] = {d};
      s[b + "ls2.gamma"] = {d};
    }
  }
  return s;
}

std::string JoinFirst(const std::vector<std::string>& items, size_t limit) {
  std::vector<std::string> head(items.begin(),
                                items.begin() + std::min(limit, items.size()));
  std::string out = absl::StrJoin(head, ", ");
  if (items.size() > limit)
    absl::StrAppend(&out, ", ... (", items.size(), " in all)");
  return out;
}

}  // namespace

absl::StatusOr<TensorMap> ParseWeights(absl::string_view bytes) {
  if (absl::StartsWith(bytes, "PK\x03\x04") ||
      (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == 0x80)) {
    ASSIGN_OR_RETURN(PthStateDict state, ReadPthStateDict(bytes));
    return std::move(state.tensors);
  }
  if (bytes.size() >= 9 && bytes[8] == '{') {
    ASSIGN_OR_RETURN(SafetensorsFile file, ParseSafetensors(bytes));
    return std::move(file.tensors);
  }
  return absl::InvalidArgumentError(
      "weights are neither a torch.save (.pth) archive nor safetensors");
}

absl::StatusOr<TensorMap> ReadWeightsFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  auto weights = ParseWeights(bytes);
  if (!weights.ok()) {
    return absl::Status(weights.status().code(),
                        absl::StrCat(path, ": ", weights.status().message()));
  }
  return weights;
}

absl::StatusOr<int> PositionGridSide(const TensorMap& weights) {
  const auto it = weights.find("pos_embed");
  if (it == weights.end() || it->second.shape.size() != 3 ||
      it->second.shape[1] < 2) {
    return absl::InvalidArgumentError(
        "pos_embed is missing or not [1, N+1, D]");
  }
  const int64_t n = it->second.shape[1] - 1;
  const int64_t side =
      static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  if (side * side != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pos_embed holds ", n, " patch positions, not a square grid"));
  }
  return static_cast<int>(side);
}

absl::StatusOr<TensorMap> CanonicalizeBackboneWeights(TensorMap raw,
                                                      const VitConfig& config) {
  TensorMap stripped;
  bool huggingface = false;
  for (auto& [key, record] : raw) {
    std::string k = key;
    while (StripPrefix(&k)) {
    }
    huggingface |= absl::StartsWith(k, "embeddings.") ||
                   absl::StartsWith(k, "encoder.layer.");
    stripped[k] = std::move(record);
  }
  if (huggingface) {
    ASSIGN_OR_RETURN(stripped, MapHuggingFaceKeys(std::move(stripped)));
  }
  TensorMap weights;
  for (auto& [key, record] : stripped) {
    if (IsDropped(key)) continue;
    auto f32 = ToFloat32(record);
    if (!f32.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight \"", key, "\": ", f32.status().message()));
    }
    weights[key] = *std::move(f32);
  }
  ASSIGN_OR_RETURN(const int side, PositionGridSide(weights));
  const std::map<std::string, Shape> expected =
      ExpectedShapes(config, int64_t{side} * side);
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [key, shape] : expected) {
    const auto it = weights.find(key);
    if (it == weights.end()) {
      missing.push_back(key);
    } else if (it->second.shape != shape) {
      misshaped.push_back(absl::StrCat(key, " is ",
                                       ShapeString(it->second.shape),
                                       ", expected ", ShapeString(shape)));
    }
  }
  for (const auto& [key, record] : weights) {
    if (!expected.count(key)) unexpected.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    std::vector<std::string> parts;
    if (!missing.empty()) parts.push_back("missing: " + JoinFirst(missing, 8));
    if (!unexpected.empty())
      parts.push_back("unexpected: " + JoinFirst(unexpected, 8));
    if (!misshaped.empty())
      parts.push_back("wrong shape: " + JoinFirst(misshaped, 8));
    return absl::InvalidArgumentError(
        absl::StrCat("weights do not fit ", config.name, " (", config.depth,
                     " blocks, width ", config.dim, ", patch ",
                     config.patch_size, "); ", absl::StrJoin(parts, "; ")));
  }
  return weights;
}

}  // namespace primaps
