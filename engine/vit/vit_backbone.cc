#include "engine/vit/vit_backbone.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/cpu_support.h"
#include "base/status_macros.h"
#include "engine/backbone/backbone_weights.h"
#include "engine/vit/tensor_cache.h"

namespace primaps {
namespace {

struct BlockWeights {
  at::Tensor norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b;
  at::Tensor norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  at::Tensor ls1, ls2;  // DINOv2 only
};

class VitBackbone final : public Backbone {
 public:
  VitBackbone(VitBackboneOptions options, at::Device device,
              at::ScalarType dtype)
      : options_(std::move(options)), device_(device), dtype_(dtype) {}

  const std::string& id() const override { return options_.config.name; }
  int patch_size() const override { return options_.config.patch_size; }
  int feature_dim() const override { return options_.config.dim; }
  bool requires_patch_multiple() const override {
    return options_.config.require_patch_multiple;
  }
  const char* precision() const override {
    return dtype_ == at::kBFloat16 ? "bf16"
           : dtype_ == at::kHalf   ? "fp16"
                                   : "fp32";
  }

  absl::Status Load(const TensorMap& weights) {
    auto get = [&](const std::string& name) {
      const TensorRecord& r = weights.at(name);
      at::Tensor t =
          at::from_blob(const_cast<char*>(r.data.data()), r.shape, at::kFloat)
              .clone();
      return t.to(device_, dtype_);
    };
    const VitConfig& c = options_.config;
    cls_token_ = get("cls_token");
    pos_embed_ = get("pos_embed").to(at::kFloat);  // interpolated in fp32
    patch_w_ = get("patch_embed.proj.weight");
    patch_b_ = get("patch_embed.proj.bias");
    norm_w_ = get("norm.weight");
    norm_b_ = get("norm.bias");
    if (c.num_register_tokens > 0) register_tokens_ = get("register_tokens");
    for (int i = 0; i < c.depth; ++i) {
      const std::string b = absl::StrCat("blocks.", i, ".");
      BlockWeights w;
      w.norm1_w = get(b + "norm1.weight");
      w.norm1_b = get(b + "norm1.bias");
      w.qkv_w = get(b + "attn.qkv.weight");
      w.qkv_b = get(b + "attn.qkv.bias");
      w.proj_w = get(b + "attn.proj.weight");
      w.proj_b = get(b + "attn.proj.bias");
      w.norm2_w = get(b + "norm2.weight");
      w.norm2_b = get(b + "norm2.bias");
      w.fc1_w = get(b + "mlp.fc1.weight");
      w.fc1_b = get(b + "mlp.fc1.bias");
      w.fc2_w = get(b + "mlp.fc2.weight");
      w.fc2_b = get(b + "mlp.fc2.bias");
      if (c.layer_scale) {
        w.ls1 = get(b + "ls1.gamma");
        w.ls2 = get(b + "ls2.gamma");
      }
      blocks_.push_back(std::move(w));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<FeatureMap>> Extract(
      const std::vector<const NormalizedImage*>& images,
      const StopCheck* stop = nullptr) override {
    if (images.empty()) return std::vector<FeatureMap>{};
    const int h = images[0]->height, w = images[0]->width;
    const int p = options_.config.patch_size;
    for (size_t i = 0; i < images.size(); ++i) {
      const NormalizedImage& im = *images[i];
      if (im.height != h || im.width != w) {
        return absl::InvalidArgumentError(
            absl::StrCat("batch image ", i, " is ", im.width, "x", im.height,
                         ", image 0 is ", w, "x", h));
      }
      if (im.data.size() != static_cast<size_t>(3) * h * w) {
        return absl::InvalidArgumentError(
            absl::StrCat("batch image ", i, " has the wrong pixel count"));
      }
    }
    if (h < p || w < p) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", w, "x", h, " is smaller than one ", p, "x", p, " patch"));
    }
    if (options_.config.require_patch_multiple && (h % p != 0 || w % p != 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", w, "x", h, " is not a multiple of ", id(), "'s patch size ",
          p, " (use a resize that is a multiple of ", p, ", or crop=full)"));
    }
    try {
      c10::InferenceMode guard;
      at::Tensor batch =
          at::empty({static_cast<int64_t>(images.size()), 3, h, w}, at::kFloat);
      for (size_t i = 0; i < images.size(); ++i) {
        std::memcpy(batch[i].data_ptr<float>(), images[i]->data.data(),
                    images[i]->data.size() * 4);
      }
      absl::Status stopped;
      at::Tensor forward = Forward(batch.to(device_, dtype_), stop, &stopped);
      if (!stopped.ok()) return stopped;
      at::Tensor features = forward.to(at::kCPU, at::kFloat).contiguous();
      const int gh = static_cast<int>(features.size(2)),
                gw = static_cast<int>(features.size(3));
      std::vector<FeatureMap> out(images.size());
      for (size_t i = 0; i < images.size(); ++i) {
        out[i].dim = feature_dim();
        out[i].height = gh;
        out[i].width = gw;
        const float* src = features[i].data_ptr<float>();
        out[i].data.assign(src,
                           src + static_cast<size_t>(feature_dim()) * gh * gw);
      }
      return out;
    } catch (const c10::Error& e) {
      return absl::InternalError(
          absl::StrCat(id(), " forward failed: ", e.what_without_backtrace()));
    }
  }

 private:
  // Patch-position embeddings for a gh x gw grid, as the official
  // interpolate_pos_encoding computes them; cached per grid size.
  // The official code skips interpolation only when the grid has the stored
  // size and the image is square in pixels (for DINO a non-multiple image
  // can have a square grid and still be interpolated).
  at::Tensor PositionEmbedding(int64_t gh, int64_t gw, bool square_image) {
    std::lock_guard<std::mutex> lock(pos_mu_);
    const auto key = std::make_tuple(gh, gw, square_image);
    auto it = pos_cache_.find(key);
    if (it != pos_cache_.end()) return it->second;
    const VitConfig& c = options_.config;
    const int64_t n = pos_embed_.size(1) - 1;
    const int64_t m =
        static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    at::Tensor result;
    if (n == gh * gw && square_image) {
      result = pos_embed_;
    } else {
      at::Tensor cls_pos = pos_embed_.slice(1, 0, 1);
      at::Tensor grid = pos_embed_.slice(1, 1)
                            .reshape({1, m, m, c.dim})
                            .permute({0, 3, 1, 2});
      at::Tensor patch_pos;
      if (c.interpolate_offset > 0) {
        // scale_factor=((gh + offset) / M, (gw + offset) / M): the output
        // size is floor(M * scale) = gh, and the kernel uses these scales.
        const double sh = (static_cast<double>(gh) + c.interpolate_offset) /
                          static_cast<double>(m);
        const double sw = (static_cast<double>(gw) + c.interpolate_offset) /
                          static_cast<double>(m);
        const std::vector<int64_t> size = {
            static_cast<int64_t>(std::floor(m * sh)),
            static_cast<int64_t>(std::floor(m * sw))};
        patch_pos = c.interpolate_antialias
                        ? at::_upsample_bicubic2d_aa(grid, size, false, sh, sw)
                        : at::upsample_bicubic2d(grid, size, false, sh, sw);
      } else {
        patch_pos = c.interpolate_antialias
                        ? at::_upsample_bicubic2d_aa(grid, {gh, gw}, false)
                        : at::upsample_bicubic2d(grid, {gh, gw}, false);
      }
      patch_pos = patch_pos.permute({0, 2, 3, 1}).reshape({1, -1, c.dim});
      result = at::cat({cls_pos, patch_pos}, 1);
    }
    result = result.to(dtype_);
    pos_cache_.emplace(key, result);
    return result;
  }

  // softmax(q k^T * scale) v, `chunk` query rows at a time so that at most
  // heads x chunk x N scores exist at once and stay in cache. The scale is
  // folded into the score GEMM and the softmax runs in place.
  at::Tensor Attention(const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v) const {
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    const int64_t batch = q.size(0), heads = q.size(1), n = q.size(2),
                  d = q.size(3);
    const int64_t chunk = options_.attention_chunk > 0
                              ? std::min<int64_t>(options_.attention_chunk, n)
                              : n;
    // Flatten batch and heads for bmm: [B*H, N, d].
    const at::Tensor q3 = q.reshape({batch * heads, n, d});
    const at::Tensor kt = k.reshape({batch * heads, n, d}).transpose(1, 2);
    const at::Tensor v3 = v.reshape({batch * heads, n, d});
    at::Tensor out = at::empty({batch * heads, n, d}, q.options());
    at::Tensor scores = at::empty({batch * heads, chunk, n}, q.options());
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t end = std::min(n, start + chunk);
      // A partial last chunk gets its own buffer: the _out kernels need a
      // contiguous output, which a slice of `scores` is not.
      at::Tensor s =
          end - start == chunk
              ? scores
              : at::empty({batch * heads, end - start, n}, q.options());
      at::baddbmm_out(s, s, q3.slice(1, start, end), kt, /*beta=*/0,
                      /*alpha=*/scale);
      at::_softmax_out(s, s, -1, false);
      out.slice(1, start, end).copy_(at::bmm(s, v3));
    }
    return out.reshape({batch, heads, n, d});
  }

  // LayerNorm over the last dimension. On the CPU in bf16 it runs in fp32
  // and rounds its output once: LibTorch's bf16 kernel takes 8x the fp32
  // kernel's time there (15% of a bf16 forward at 320, bench/vit_profile.sh)
  // and accumulates in fp32 as well, so the result is the same.
  at::Tensor LayerNorm(const at::Tensor& x, const at::Tensor& w,
                       const at::Tensor& b) const {
    const VitConfig& c = options_.config;
    if (dtype_ != at::kBFloat16 || !device_.is_cpu())
      return at::layer_norm(x, {c.dim}, w, b, c.layer_norm_eps);
    return at::layer_norm(x.to(at::kFloat), {c.dim}, w.to(at::kFloat),
                          b.to(at::kFloat), c.layer_norm_eps)
        .to(at::kBFloat16);
  }

  // An undefined tensor, with *stopped set, when `stop` says to stop
  // between two blocks.
  at::Tensor Forward(const at::Tensor& images, const StopCheck* stop,
                     absl::Status* stopped) {
    const VitConfig& c = options_.config;
    const int64_t batch = images.size(0);
    at::Tensor x =
        at::conv2d(images, patch_w_, patch_b_, c.patch_size);  // B, D, gh, gw
    const int64_t gh = x.size(2), gw = x.size(3);
    x = x.flatten(2).transpose(1, 2);
    x = at::cat({cls_token_.expand({batch, -1, -1}), x}, 1);
    x = x + PositionEmbedding(gh, gw, images.size(2) == images.size(3));
    if (c.num_register_tokens > 0) {
      x = at::cat({x.slice(1, 0, 1), register_tokens_.expand({batch, -1, -1}),
                   x.slice(1, 1)},
                  1);
    }
    const int64_t tokens = x.size(1);
    const int64_t head_dim = c.dim / c.heads;
    const int last = options_.block < 0 ? c.depth - 1 : options_.block;
    for (int i = 0; i <= last; ++i) {
      *stopped = PollStop(stop, "the backbone's blocks");
      if (!stopped->ok()) return at::Tensor();
      const BlockWeights& b = blocks_[i];
      at::Tensor y = LayerNorm(x, b.norm1_w, b.norm1_b);
      at::Tensor qkv = at::linear(y, b.qkv_w, b.qkv_b)
                           .reshape({batch, tokens, 3, c.heads, head_dim})
                           .permute({2, 0, 3, 1, 4});
      y = Attention(qkv[0], qkv[1], qkv[2])
              .transpose(1, 2)
              .reshape({batch, tokens, c.dim});
      y = at::linear(y, b.proj_w, b.proj_b);
      if (c.layer_scale) y.mul_(b.ls1);
      x = x + y;
      y = LayerNorm(x, b.norm2_w, b.norm2_b);
      y = at::linear(at::gelu(at::linear(y, b.fc1_w, b.fc1_b)), b.fc2_w,
                     b.fc2_b);
      if (c.layer_scale) y.mul_(b.ls2);
      x = x + y;
    }
    x = LayerNorm(x, norm_w_, norm_b_);
    // Patch tokens only: drop CLS and registers; D x gh x gw.
    return x.slice(1, 1 + c.num_register_tokens)
        .transpose(1, 2)
        .reshape({batch, c.dim, gh, gw});
  }

  const VitBackboneOptions options_;
  const at::Device device_;
  const at::ScalarType dtype_;
  at::Tensor cls_token_, pos_embed_, patch_w_, patch_b_, norm_w_, norm_b_,
      register_tokens_;
  std::vector<BlockWeights> blocks_;
  std::mutex pos_mu_;
  std::map<std::tuple<int64_t, int64_t, bool>, at::Tensor>
      pos_cache_;  // guarded by pos_mu_
};

absl::StatusOr<at::Device> ParseDevice(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (absl::StartsWith(name, "cuda")) {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device \"", name,
          "\" requested but this LibTorch build has no usable CUDA device"));
    }
    try {
      return at::Device(name);
    } catch (const c10::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad device \"", name, "\""));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device is \"", name, "\", expected cpu or cuda[:N]"));
}

absl::StatusOr<at::ScalarType> ResolvePrecision(const std::string& precision,
                                                const at::Device& device) {
  if (precision == "fp32") return at::kFloat;
  if (precision == "bf16") return at::kBFloat16;
  if (precision == "auto") {
    return device.is_cuda() || CpuHasNativeBf16() ? at::kBFloat16 : at::kFloat;
  }
  if (precision == "fp16") {
    if (!device.is_cuda()) {
      return absl::InvalidArgumentError(
          "precision fp16 needs a CUDA device (on CPU use bf16)");
    }
    return at::kHalf;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "precision is \"", precision, "\", expected fp32, bf16, fp16 or auto"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backbone>> CreateVitBackbone(
    const TensorMap& weights, const VitBackboneOptions& options) {
  const VitConfig& c = options.config;
  if (c.dim <= 0 || c.heads <= 0 || c.dim % c.heads != 0 || c.depth <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad architecture: width ", c.dim, ", ", c.heads,
                     " heads, ", c.depth, " blocks"));
  }
  if (options.block < -1 || options.block >= c.depth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block is ", options.block, ", must be -1 or in [0, ", c.depth, ")"));
  }
  ASSIGN_OR_RETURN(const at::Device device, ParseDevice(options.device));
  ASSIGN_OR_RETURN(const at::ScalarType dtype,
                   ResolvePrecision(options.precision, device));
  // A forward's activations from reused memory (tensor_cache.h).
  if (device.is_cpu()) UseCachingCpuAllocator();
  auto backbone = std::make_unique<VitBackbone>(options, device, dtype);
  try {
    c10::InferenceMode guard;
    RETURN_IF_ERROR(backbone->Load(weights));
  } catch (const std::out_of_range&) {
    return absl::InvalidArgumentError(
        "weights are not canonical; use CanonicalizeBackboneWeights");
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("loading weights failed: ", e.what_without_backtrace()));
  }
  return std::unique_ptr<Backbone>(std::move(backbone));
}

absl::StatusOr<std::unique_ptr<Backbone>> LoadVitBackbone(
    const std::string& weights_path, const VitBackboneOptions& options) {
  ASSIGN_OR_RETURN(TensorMap raw, ReadWeightsFile(weights_path));
  auto weights = CanonicalizeBackboneWeights(std::move(raw), options.config);
  if (!weights.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(weights_path, ": ", weights.status().message()));
  }
  return CreateVitBackbone(*weights, options);
}

void SetTorchThreads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

}  // namespace primaps
