// Does the trainer keep the server busy? The server's own feature
// throughput (ExtractFeatures on the trainer's crops, 4 concurrent callers)
// against the feature rate the trainer consumes (student views per second,
// original views cached), in one run. Prints a markdown table.
//
//   primaps_trainer_bench [--steps=N] [--batch=N] [--resize=N]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "base/file_util.h"
#include "client/primaps_client.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "server/server.h"
#include "trainer/synthetic_dataset.h"
#include "trainer/trainer.h"

namespace primaps {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point s) {
  return std::chrono::duration<double>(Clock::now() - s).count();
}
}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  int steps = 20, batch = 8, resize = 160;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--steps=", 0) == 0)
      (void)absl::SimpleAtoi(a.substr(8), &steps);
    if (a.rfind("--batch=", 0) == 0)
      (void)absl::SimpleAtoi(a.substr(8), &batch);
    if (a.rfind("--resize=", 0) == 0)
      (void)absl::SimpleAtoi(a.substr(9), &resize);
  }
  const fs::path dir = fs::temp_directory_path() / "primaps_trainer_bench";
  fs::remove_all(dir);
  SyntheticDatasetOptions data;
  data.classes = 5;
  data.images = 32;
  data.width = data.height = resize;
  if (!WriteSyntheticDataset((dir / "train").string(), data).ok()) return 1;
  v1::ServerConfig config = DefaultServerConfig();
  config.set_listen("127.0.0.1:0");
  config.set_metrics_listen("");
  config.set_http_listen("");
  config.set_resize(resize);
  config.set_cpu_threads(2);
  auto server = *Server::Create(config);
  const std::string address = "127.0.0.1:" + std::to_string(server->port());

  // Server's own throughput on the same crops.
  std::vector<RgbImage> crops;
  for (const auto& e : fs::directory_iterator(dir / "train" / "images")) {
    auto rgb = DecodeImage(*ReadFile(e.path().string()));
    PreprocessOptions p;
    p.resize = resize;
    crops.push_back(DenormalizeToRgb(*Preprocess(*rgb, p)));
  }
  std::atomic<int> next{0};
  const int requests = 96;
  std::vector<std::thread> callers;
  const auto start = Clock::now();
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      ClientOptions options;
      options.target = address;
      auto client = *PrimapsClient::Create(options);
      for (int i = next++; i < requests; i = next++) {
        const RgbImage& c = crops[i % crops.size()];
        v1::FeatureRequest r;
        r.mutable_image()->mutable_raw()->set_width(c.width);
        r.mutable_image()->mutable_raw()->set_height(c.height);
        r.mutable_image()->mutable_raw()->set_channels(3);
        r.mutable_image()->mutable_raw()->set_pixels(c.pixels.data(),
                                                     c.pixels.size());
        r.mutable_preprocess()->set_resize(resize);
        if (!client->ExtractFeatures(r).ok()) std::abort();
      }
    });
  }
  for (auto& t : callers) t.join();
  const double server_rate = requests / Seconds(start);

  // The trainer: a first short run fills the cache of original views, the
  // timed run then only asks for student views.
  TrainerOptions o;
  o.servers = {address};
  o.train_dir = (dir / "train").string();
  o.out_dir = (dir / "out").string();
  o.classes = 5;
  o.batch = batch;
  o.resize = resize;
  o.steps = 2;
  o.checkpoint_every = 0;
  o.log_every = absl::Hours(1);
  if (!RunTrainer(o).ok()) return 1;
  o.steps = 2 + steps;
  o.resume = true;
  const auto t0 = Clock::now();
  if (!RunTrainer(o).ok()) return 1;
  const double trainer_rate = steps * batch / Seconds(t0);
  server->Drain(absl::Seconds(10));
  fs::remove_all(dir);
  std::printf(
      "| crop | batch | server's own features/s | trainer consumes features/s "
      "| server kept busy |\n");
  std::printf("|---|---|---|---|---|\n");
  std::printf("| %dx%d | %d | %.1f | %.1f | %.0f%% |\n", resize, resize, batch,
              server_rate, trainer_rate, 100 * trainer_rate / server_rate);
  return 0;
}
