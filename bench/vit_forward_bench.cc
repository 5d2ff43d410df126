// Times a ViT forward pass at a given input size and prints one JSON line
// per configuration. Driven by bench/vit_forward_bench.sh, which runs the
// PyTorch reference on the same weights in the same run.
//
//   primaps_vit_bench --weights=W.safetensors --arch=dino_vits8 --size=320
//                     [--height=H --width=W] --threads=2 --reps=5
//                     --chunks=0,256 [--precision=fp32|bf16]
//                     [--features_out=F.bin] [--profile=TRACE.json]
//
// Each JSON line names the precision and the input size. --features_out
// writes the last configuration's features (float32, D x h x w) for
// peer_bench.sh to compare with ONNX Runtime's. --profile writes one more
// forward's ops as a Chrome trace (LibTorch's profiler), which
// vit_profile.sh sums per op.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/vit/vit_backbone.h"

namespace {

std::string Flag(int argc, char** argv, const std::string& name,
                 const std::string& fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
  }
  return fallback;
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// The matrix-product rate of this machine at the given thread count, in
// fp32 or bf16.
double MatmulGflops(bool bf16) {
  c10::InferenceMode guard;
  const int64_t n = 2048;
  const auto type = bf16 ? at::kBFloat16 : at::kFloat;
  at::Tensor a = at::randn({n, n}).to(type), b = at::randn({n, n}).to(type);
  for (int i = 0; i < 2; ++i) at::mm(a, b);
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    at::mm(a, b);
    best = std::min(best, Seconds(start));
  }
  return 2.0 * n * n * n / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string weights = Flag(argc, argv, "weights", "");
  const std::string arch = Flag(argc, argv, "arch", "dino_vits8");
  int size = 320, threads = 2, reps = 5;
  (void)absl::SimpleAtoi(Flag(argc, argv, "size", "320"), &size);
  int height = size, width = size;
  (void)absl::SimpleAtoi(Flag(argc, argv, "height", std::to_string(size)),
                         &height);
  (void)absl::SimpleAtoi(Flag(argc, argv, "width", std::to_string(size)),
                         &width);
  const std::string precision = Flag(argc, argv, "precision", "fp32");
  const std::string features_out = Flag(argc, argv, "features_out", "");
  const std::string profile = Flag(argc, argv, "profile", "");
  (void)absl::SimpleAtoi(Flag(argc, argv, "threads", "2"), &threads);
  (void)absl::SimpleAtoi(Flag(argc, argv, "reps", "5"), &reps);
  primaps::SetTorchThreads(threads);

  std::printf(
      "{\"impl\": \"matmul\", \"precision\": \"%s\", \"threads\": %d, "
      "\"gflops\": %.1f}\n",
      precision.c_str(), threads, MatmulGflops(precision == "bf16"));
  for (const absl::string_view chunk_text :
       absl::StrSplit(Flag(argc, argv, "chunks", "0,256"), ',')) {
    int chunk = 0;
    (void)absl::SimpleAtoi(chunk_text, &chunk);
    primaps::VitBackboneOptions options;
    auto config = primaps::VitConfigByName(arch);
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
      return 2;
    }
    options.config = *config;
    options.attention_chunk = chunk;
    options.precision = precision;
    auto backbone = primaps::LoadVitBackbone(weights, options);
    if (!backbone.ok()) {
      std::fprintf(stderr, "%s\n", backbone.status().ToString().c_str());
      return 2;
    }
    primaps::NormalizedImage image;
    image.height = image.valid_height = height;
    image.width = image.valid_width = width;
    image.data.resize(static_cast<size_t>(3) * height * width);
    for (size_t i = 0; i < image.data.size(); ++i)
      image.data[i] = static_cast<float>((i * 7919) % 1000) / 500.f - 1.f;
    (void)(*backbone)->Extract({&image});  // warm-up
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      const auto start = std::chrono::steady_clock::now();
      auto features = (*backbone)->Extract({&image});
      times.push_back(Seconds(start));
      if (!features.ok()) return 1;
      if (r == reps - 1 && !features_out.empty()) {
        std::FILE* f = std::fopen(features_out.c_str(), "wb");
        if (f == nullptr) return 1;
        std::fwrite((*features)[0].data.data(), sizeof(float),
                    (*features)[0].data.size(), f);
        std::fclose(f);
      }
    }
    if (!profile.empty()) {
      torch::autograd::profiler::RecordProfile trace(profile);
      if (!(*backbone)->Extract({&image}).ok()) return 1;
    }
    std::sort(times.begin(), times.end());
    std::printf(
        "{\"impl\": \"cpp\", \"precision\": \"%s\", \"height\": %d, "
        "\"width\": %d, \"chunk\": %d, \"threads\": %d, \"median_s\": "
        "%.4f, \"min_s\": %.4f}\n",
        precision.c_str(), height, width, chunk, threads,
        times[times.size() / 2], times[0]);
  }
  return 0;
}
