// The serving path with the DINO ViT-S/8 backbone, per precision, in one
// run: the backbone alone, PriMaPs alone, the engine end to end, and the
// server (in this process, over loopback gRPC) at concurrency 1, 2, 4 and
// 8; then the pseudo labels' agreement of each precision with fp32's.
// Prints a markdown table and one JSON line per precision (for
// bench/vit_serving_bench.sh, which adds the reference Python pipeline).
//
//   primaps_vit_serving_bench --weights=VITS8.safetensors [--threads=2]
//       [--precisions=fp32,bf16] [--requests=8] [--images_dir=DIR]
//       [--crf=true] [--max_batch=8] [--memory_requests=N]
//       [--memory_resize=128]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "bench/bench_flags.h"
#include "client/primaps_client.h"
#include "engine/backbone/vit_config.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"
#include "engine/vit/vit_backbone.h"
#include "server/server.h"

namespace primaps {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct Flags {
  std::string weights;
  int threads = 2;
  std::vector<std::string> precisions = {"fp32", "bf16"};
  int requests = 8;
  std::string images_dir = "../shared/data/demo";
  bool crf = true;
  int max_batch = 8;  // the server's
  // Resident memory after 100 and after this many requests (0: not
  // measured), at --memory_resize so that it takes minutes, not hours.
  int memory_requests = 0;
  int memory_resize = 128;
};

double ResidentMb() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * (::sysconf(_SC_PAGESIZE) / 1048576.0);
}

struct EngineTimes {
  double backbone_s = 0;         // one image's forward
  double primaps_s = 0;          // PriMaPs (with the CRF when on) on one thread
  double engine_s = 0;           // decode, preprocess, forward, PriMaPs
  double batch4_s = 0;           // per image, in a forward of 4 images
  std::vector<LabelMap> labels;  // per image
};

PriMaPsOptions MethodOptions(const Flags& flags) {
  PriMaPsOptions options;
  options.use_crf = flags.crf;
  return options;
}

// The engine called directly, one image at a time.
absl::StatusOr<EngineTimes> TimeEngine(const Flags& flags,
                                       const std::string& precision,
                                       const std::vector<std::string>& images) {
  VitBackboneOptions options;
  ASSIGN_OR_RETURN(options.config, VitConfigByName("dino_vits8"));
  options.precision = precision;
  ASSIGN_OR_RETURN(std::unique_ptr<Backbone> backbone,
                   LoadVitBackbone(flags.weights, options));
  std::vector<NormalizedImage> processed;
  for (const std::string& bytes : images) {
    ASSIGN_OR_RETURN(const RgbImage rgb, DecodeImage(bytes));
    ASSIGN_OR_RETURN(NormalizedImage image,
                     Preprocess(rgb, PreprocessOptions{}));
    processed.push_back(std::move(image));
  }
  RETURN_IF_ERROR(backbone->Extract({&processed[0]}).status());  // warm-up
  EngineTimes times;
  std::vector<double> forward, method, whole;
  for (int i = 0; i < flags.requests; ++i) {
    const size_t k = i % images.size();
    auto start = Clock::now();
    ASSIGN_OR_RETURN(const RgbImage rgb, DecodeImage(images[k]));
    ASSIGN_OR_RETURN(const NormalizedImage image,
                     Preprocess(rgb, PreprocessOptions{}));
    const auto forward_start = Clock::now();
    ASSIGN_OR_RETURN(std::vector<FeatureMap> features,
                     backbone->Extract({&image}));
    forward.push_back(Seconds(forward_start));
    const auto method_start = Clock::now();
    ASSIGN_OR_RETURN(PriMaPsResult result,
                     ComputePriMaPs(features[0], image, MethodOptions(flags)));
    method.push_back(Seconds(method_start));
    whole.push_back(Seconds(start));
    if (times.labels.size() < images.size())
      times.labels.push_back(std::move(result.mask_labels));
  }
  std::vector<const NormalizedImage*> four;
  for (int i = 0; i < 4; ++i) four.push_back(&processed[i % processed.size()]);
  std::vector<double> batched;
  for (int rep = 0; rep < 2; ++rep) {
    const auto start = Clock::now();
    RETURN_IF_ERROR(backbone->Extract(four).status());
    batched.push_back(Seconds(start) / 4);
  }
  times.batch4_s = Median(batched);
  times.backbone_s = Median(forward);
  times.primaps_s = Median(method);
  times.engine_s = Median(whole);
  return times;
}

struct Served {
  double images_per_s = 0;
  double p50_s = 0;
};

absl::StatusOr<Served> TimeServer(const std::string& address,
                                  const Flags& flags,
                                  const std::vector<std::string>& images,
                                  int requests, int concurrency,
                                  int resize = 0) {
  std::vector<double> latencies(requests);
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      ClientOptions options;
      options.target = address;
      options.deadline = absl::Minutes(10);
      auto client = PrimapsClient::Create(options);
      if (!client.ok()) {
        failed = true;
        return;
      }
      for (int i = next++; i < requests; i = next++) {
        v1::ImageRequest request;
        request.mutable_image()->set_encoded(images[i % images.size()]);
        request.mutable_preprocess()->set_crf(flags.crf);
        request.mutable_preprocess()->set_resize(resize);
        const auto t = Clock::now();
        auto response = (*client)->ProposeMasks(request);
        if (!response.ok()) {
          std::fprintf(stderr, "%s\n", response.status().ToString().c_str());
          failed = true;
        }
        latencies[i] = Seconds(t);
      }
    });
  }
  for (auto& t : clients) t.join();
  if (failed) return absl::InternalError("a served request failed");
  return Served{requests / Seconds(start), Median(latencies)};
}

double Agreement(const LabelMap& a, const LabelMap& b) {
  if (a.labels.size() != b.labels.size() || a.labels.empty()) return 0;
  size_t same = 0;
  for (size_t i = 0; i < a.labels.size(); ++i)
    same += a.labels[i] == b.labels[i];
  return static_cast<double>(same) / a.labels.size();
}

int Run(const Flags& flags) {
  std::vector<std::string> images;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(flags.images_dir, ec)) {
    if (auto bytes = ReadFile(entry.path().string()); bytes.ok())
      images.push_back(*bytes);
  }
  if (images.empty()) {
    std::fprintf(stderr, "no images in %s\n", flags.images_dir.c_str());
    return 2;
  }
  SetTorchThreads(flags.threads);
  const std::vector<int> concurrencies = {1, 2, 4, 8};
  std::map<std::string, EngineTimes> engine;
  std::map<std::string, std::vector<Served>> served;
  std::pair<double, double> memory;  // resident MB after 100 and after all
  for (const std::string& precision : flags.precisions) {
    std::fprintf(stderr, "%s: engine\n", precision.c_str());
    auto times = TimeEngine(flags, precision, images);
    if (!times.ok()) {
      std::fprintf(stderr, "%s\n", times.status().ToString().c_str());
      return 1;
    }
    engine[precision] = std::move(*times);
    v1::ServerConfig config = DefaultServerConfig();
    config.set_listen("127.0.0.1:0");
    config.set_metrics_listen("");
    config.set_http_listen("");
    config.set_backbone("dino_vits8");
    config.set_weights(flags.weights);
    config.set_precision(precision);
    config.set_threads(flags.threads);
    config.set_cpu_threads(flags.threads);
    config.set_max_batch(flags.max_batch);
    auto server = Server::Create(config);
    if (!server.ok()) {
      std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
      return 1;
    }
    const std::string address =
        "127.0.0.1:" + std::to_string((*server)->port());
    if (!TimeServer(address, flags, images, 2, 2).ok()) return 1;  // warm-up
    for (const int c : concurrencies) {
      std::fprintf(stderr, "%s: server at concurrency %d\n", precision.c_str(),
                   c);
      auto result = TimeServer(address, flags, images,
                               std::max(flags.requests, 2 * c), c);
      if (!result.ok()) return 1;
      served[precision].push_back(*result);
    }
    if (flags.memory_requests > 100 && precision == flags.precisions[0]) {
      std::fprintf(stderr, "%s: memory over %d requests\n", precision.c_str(),
                   flags.memory_requests);
      if (!TimeServer(address, flags, images, 100, 4, flags.memory_resize).ok())
        return 1;
      const double after_100 = ResidentMb();
      if (!TimeServer(address, flags, images, flags.memory_requests - 100, 4,
                      flags.memory_resize)
               .ok())
        return 1;
      memory = {after_100, ResidentMb()};
    }
    (*server)->Drain(absl::Seconds(10));
  }

  std::printf(
      "| precision | backbone ms | in a batch of 4 | PriMaPs ms | engine ms | "
      "server p50 ms "
      "(c=1) | images/s c=1 | c=2 | c=4 | c=8 | c=4 / (1 / (backbone + "
      "PriMaPs)) | c=1 p50 / (backbone + PriMaPs) |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& precision : flags.precisions) {
    const EngineTimes& e = engine[precision];
    const std::vector<Served>& s = served[precision];
    const double bound = e.backbone_s + e.primaps_s;
    std::printf(
        "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.3f | %.3f | %.3f | %.3f "
        "| %.2f | %.2f |\n",
        precision.c_str(), 1000 * e.backbone_s, 1000 * e.batch4_s,
        1000 * e.primaps_s, 1000 * e.engine_s, 1000 * s[0].p50_s,
        s[0].images_per_s, s[1].images_per_s, s[2].images_per_s,
        s[3].images_per_s, s[2].images_per_s * bound, s[0].p50_s / bound);
  }
  const std::string base = flags.precisions[0];
  for (const std::string& precision : flags.precisions) {
    if (precision == base) continue;
    double sum = 0, worst = 1;
    const auto& a = engine[base].labels;
    const auto& b = engine[precision].labels;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      const double agree = Agreement(a[i], b[i]);
      sum += agree;
      worst = std::min(worst, agree);
    }
    std::printf(
        "\n%s against %s: server throughput at c=4 %.2fx; mask labels agree "
        "on %.1f%% of pixels (mean over %zu photos), %.1f%% (worst)\n",
        precision.c_str(), base.c_str(),
        served[precision][2].images_per_s / served[base][2].images_per_s,
        100 * sum / a.size(), a.size(), 100 * worst);
  }
  if (flags.memory_requests > 100) {
    std::printf(
        "\nResident memory (%s, resize %d, concurrency 4): %.0f MB after 100 "
        "requests, %.0f MB after %d (%+.1f%%)\n",
        flags.precisions[0].c_str(), flags.memory_resize, memory.first,
        memory.second, flags.memory_requests,
        100 * (memory.second / memory.first - 1));
  }
  for (const std::string& precision : flags.precisions) {
    const EngineTimes& e = engine[precision];
    std::printf(
        "{\"impl\": \"cpp\", \"precision\": \"%s\", \"backbone_s\": %.4f, "
        "\"primaps_s\": %.4f, \"engine_s\": %.4f, \"server_c1_p50_s\": %.4f, "
        "\"server_c4_images_per_s\": %.4f}\n",
        precision.c_str(), e.backbone_s, e.primaps_s, e.engine_s,
        served[precision][0].p50_s, served[precision][2].images_per_s);
  }
  return 0;
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  primaps::Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string("--") + name + "=";
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("weights")) flags.weights = v;
    if (const char* v = value("images_dir")) flags.images_dir = v;
    if (const char* v = value("crf")) flags.crf = std::string(v) != "false";
    if (const char* v = value("precisions"))
      flags.precisions = absl::StrSplit(v, ',');
  }
  flags.threads = primaps::IntFlag(argc, argv, "threads", flags.threads);
  flags.requests = primaps::IntFlag(argc, argv, "requests", flags.requests);
  flags.max_batch = primaps::IntFlag(argc, argv, "max_batch", flags.max_batch);
  flags.memory_requests =
      primaps::IntFlag(argc, argv, "memory_requests", flags.memory_requests);
  flags.memory_resize =
      primaps::IntFlag(argc, argv, "memory_resize", flags.memory_resize);
  if (flags.weights.empty()) {
    std::fprintf(stderr,
                 "usage: primaps_vit_serving_bench --weights=VITS8.safetensors "
                 "(bench/vit_forward_bench.py write PATH makes one)\n");
    return 2;
  }
  return primaps::Run(flags);
}
