// Head swaps every 200 ms while 4 clients keep calling, for --seconds:
// failed requests, swaps, health-check latency and resident memory.
// Prints a markdown table.
//
//   primaps_swap_under_load_bench [--seconds=60]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "base/file_util.h"
#include "client/primaps_client.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/segmentation_head.h"
#include "server/server.h"

namespace {

double ResidentMb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE) / 1e6;
}

std::string Head(int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  primaps::SegmentationHead head;
  head.classes = 27;
  head.dim = primaps::kBuiltinFeatureDim;
  head.backbone = "builtin";
  for (auto* conv : {&head.theta_m, &head.theta_r}) {
    conv->v.resize(27 * head.dim);
    for (float& v : conv->v) v = normal(rng);
    conv->g.assign(27, 1.f);
  }
  return primaps::SerializeHeadCheckpoint(head);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace primaps;
  int seconds = 60;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--seconds=", 0) == 0)
      (void)absl::SimpleAtoi(a.substr(10), &seconds);
  }
  const std::string token_path = "/tmp/primaps_swap_bench_token";
  (void)WriteFileAtomically(token_path, "bench-token");
  v1::ServerConfig config = DefaultServerConfig();
  config.set_listen("127.0.0.1:0");
  config.set_metrics_listen("");
  config.set_http_listen("");
  config.set_admin_token_file(token_path);
  auto server = *Server::Create(config);
  const std::string address = "127.0.0.1:" + std::to_string(server->port());
  const std::string image = *ReadFile("tests/golden/fixtures/sample_scene.png");
  auto make_client = [&](bool admin) {
    ClientOptions options;
    options.target = address;
    options.retries = 0;
    if (admin) options.admin_token = "bench-token";
    return *PrimapsClient::Create(options);
  };
  const double rss_start = ResidentMb();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0}, swaps{0}, swap_failures{0};
  std::atomic<double> peak_rss{rss_start};
  std::vector<double> health_ms;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto client = make_client(false);
      v1::ImageRequest request;
      request.mutable_image()->set_encoded(image);
      request.mutable_preprocess()->set_resize(160);
      while (!stop) (client->PseudoLabel(request).ok() ? ok : failed)++;
    });
  }
  threads.emplace_back([&] {
    auto admin = make_client(true);
    std::vector<std::string> heads;
    for (int i = 0; i < 8; ++i) heads.push_back(Head(i));
    for (int i = 0; !stop; ++i) {
      v1::LoadCheckpointRequest load;
      load.set_data(heads[i % heads.size()]);
      (admin->LoadCheckpoint(load).ok() ? swaps : swap_failures)++;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  std::thread health([&] {
    auto client = make_client(false);
    while (!stop) {
      const auto t0 = std::chrono::steady_clock::now();
      const bool serving = client->Health().value_or("") == "SERVING";
      health_ms.push_back(serving ? std::chrono::duration<double, std::milli>(
                                        std::chrono::steady_clock::now() - t0)
                                        .count()
                                  : 1e9);
      double rss = ResidentMb(), prev = peak_rss.load();
      while (rss > prev && !peak_rss.compare_exchange_weak(prev, rss)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  health.join();
  const double rss_end = ResidentMb();
  server->Drain(absl::Seconds(10));
  std::sort(health_ms.begin(), health_ms.end());
  auto pct = [&](double p) {
    return health_ms[std::min(health_ms.size() - 1,
                              static_cast<size_t>(p * health_ms.size()))];
  };
  std::printf(
      "| seconds | requests OK | failed | swaps | swap failures | health "
      "checks | health p50 / p99 / max ms | RSS start / peak / end MB |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::printf(
      "| %d | %lld | %lld | %lld | %lld | %zu | %.2f / %.2f / %.2f | %.0f / "
      "%.0f / %.0f |\n",
      seconds, static_cast<long long>(ok), static_cast<long long>(failed),
      static_cast<long long>(swaps), static_cast<long long>(swap_failures),
      health_ms.size(), pct(0.5), pct(0.99), health_ms.back(), rss_start,
      peak_rss.load(), rss_end);
  return failed == 0 && swap_failures == 0 ? 0 : 1;
}
