// DINO and DINOv2 ViT backbones in LibTorch (implementation in
// vit_backbone.cc; this header stays torch-free).
#ifndef PRIMAPS_ENGINE_VIT_VIT_BACKBONE_H_
#define PRIMAPS_ENGINE_VIT_VIT_BACKBONE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backbone/backbone.h"
#include "engine/backbone/vit_config.h"
#include "engine/checkpoint/tensor_record.h"

namespace primaps {

struct VitBackboneOptions {
  VitConfig config;
  // "cpu" or "cuda" (or "cuda:N"); CUDA is chosen at run time and refused
  // with a clear error when this LibTorch has none.
  std::string device = "cpu";
  // "fp32"; "bf16" (CUDA, or CPUs, where oneDNN computes its products:
  // fast with AVX512-BF16 or AMX, emulated and slow elsewhere); "fp16"
  // (CUDA only); or "auto": bf16 on CUDA and on CPUs with native bf16
  // (CpuHasNativeBf16), fp32 elsewhere. Features from bf16 differ from
  // fp32's by about 1% (docs/benchmarks.md has the labels' agreement).
  std::string precision = "fp32";
  // Which block's output to return, after the final norm: -1 is the last
  // block (DINO get_intermediate_layers(x, n=1)), 0..depth-1 an earlier one.
  int block = -1;
  // Query rows per attention chunk: attention is computed for this many
  // queries at a time, so the full N x N matrix never exists. 0 = all.
  int attention_chunk = 256;
};

// Builds a backbone from canonical weights (see backbone_weights.h).
absl::StatusOr<std::unique_ptr<Backbone>> CreateVitBackbone(
    const TensorMap& weights, const VitBackboneOptions& options);

// Reads, canonicalizes and loads a weights file for `options.config`.
absl::StatusOr<std::unique_ptr<Backbone>> LoadVitBackbone(
    const std::string& weights_path, const VitBackboneOptions& options);

// Sets LibTorch's intra-op thread count (process-wide); <= 0 keeps the
// default. Call once at start-up, from the --threads flag.
void SetTorchThreads(int threads);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_VIT_VIT_BACKBONE_H_
