// Serving overhead: ProposeMasks through primaps-server (in this process,
// over loopback gRPC) at concurrency 1, 4 and 16, against the engine called
// directly on the same images, in one run. Prints a markdown table.
//
//   primaps_serving_bench [--requests=N] [--images_dir=DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/blocking_counter.h"
#include "base/file_util.h"
#include "base/thread_pool.h"
#include "client/primaps_client.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"
#include "server/server.h"

namespace primaps {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Result {
  double images_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

Result Summarize(std::vector<double> latencies_s, double elapsed_s) {
  std::sort(latencies_s.begin(), latencies_s.end());
  Result r;
  r.images_per_s = latencies_s.size() / elapsed_s;
  r.p50_ms = 1000 * latencies_s[latencies_s.size() / 2];
  r.p99_ms = 1000 * latencies_s[std::min(latencies_s.size() - 1,
                                         latencies_s.size() * 99 / 100)];
  return r;
}

// The engine, directly: decode, preprocess, builtin features, PriMaPs with
// the CRF, on `threads` threads.
Result Engine(const std::vector<std::string>& images, int requests,
              int threads) {
  auto backbone = CreateBuiltinBackbone();
  std::vector<double> latencies(requests);
  ThreadPool pool(threads);
  absl::BlockingCounter done(requests);
  const auto start = Clock::now();
  for (int i = 0; i < requests; ++i) {
    pool.Schedule([&, i] {
      const auto t = Clock::now();
      auto rgb = DecodeImage(images[i % images.size()]);
      auto image = Preprocess(*rgb, PreprocessOptions{});
      auto features = backbone->Extract({&*image});
      auto result = ComputePriMaPs((*features)[0], *image, PriMaPsOptions{});
      if (!result.ok()) std::abort();
      latencies[i] = Seconds(t);
      done.DecrementCount();
    });
  }
  done.Wait();
  return Summarize(latencies, Seconds(start));
}

Result Served(const std::string& address,
              const std::vector<std::string>& images, int requests,
              int concurrency) {
  std::vector<double> latencies(requests);
  std::atomic<int> next{0};
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      ClientOptions options;
      options.target = address;
      auto client = *PrimapsClient::Create(options);
      for (int i = next++; i < requests; i = next++) {
        v1::ImageRequest request;
        request.mutable_image()->set_encoded(images[i % images.size()]);
        const auto t = Clock::now();
        auto response = client->ProposeMasks(request);
        if (!response.ok()) {
          std::fprintf(stderr, "%s\n", response.status().ToString().c_str());
          std::abort();
        }
        latencies[i] = Seconds(t);
      }
    });
  }
  for (auto& t : clients) t.join();
  return Summarize(latencies, Seconds(start));
}

std::unique_ptr<Server> StartServer(int max_batch) {
  v1::ServerConfig config = DefaultServerConfig();
  config.set_listen("127.0.0.1:0");
  config.set_metrics_listen("");
  config.set_http_listen("");
  config.set_cpu_threads(2);
  config.set_max_batch(max_batch);
  config.set_max_queue(256);
  return *Server::Create(config);
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  int requests = 24;
  std::string dir = "../shared/data/demo";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--requests=", 0) == 0)
      (void)absl::SimpleAtoi(arg.substr(11), &requests);
    if (arg.rfind("--images_dir=", 0) == 0) dir = arg.substr(13);
  }
  std::vector<std::string> images;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (auto bytes = ReadFile(entry.path().string()); bytes.ok())
      images.push_back(*bytes);
  }
  if (auto sample = ReadFile("tests/golden/fixtures/sample_scene.png");
      sample.ok())
    images.push_back(*sample);
  if (images.empty()) {
    std::fprintf(stderr, "no images (run from the repository root)\n");
    return 2;
  }
  std::fprintf(stderr, "%zu images, %d requests per row\n", images.size(),
               requests);
  const Result engine1 = Engine(images, requests, 1);
  const Result engine2 = Engine(images, requests, 2);
  auto server = StartServer(8);
  const std::string address = "127.0.0.1:" + std::to_string(server->port());
  Served(address, images, 4, 2);  // warm up the channel and caches
  const Result s1 = Served(address, images, requests, 1);
  const Result s4 = Served(address, images, requests, 4);
  const Result s16 = Served(address, images, requests, 16);
  server->Drain(absl::Seconds(10));
  server.reset();
  auto unbatched = StartServer(1);
  const Result u1 = Served("127.0.0.1:" + std::to_string(unbatched->port()),
                           images, requests, 1);
  unbatched->Drain(absl::Seconds(10));

  std::printf(
      "| path | concurrency | images/s | p50 ms | p99 ms | vs engine "
      "|\n|---|---|---|---|---|---|\n");
  std::printf("| engine direct | 1 thread | %.2f | %.0f | %.0f | 1.00 |\n",
              engine1.images_per_s, engine1.p50_ms, engine1.p99_ms);
  std::printf("| engine direct | 2 threads | %.2f | %.0f | %.0f | 1.00 |\n",
              engine2.images_per_s, engine2.p50_ms, engine2.p99_ms);
  std::printf(
      "| server, batching off | 1 | %.2f | %.0f | %.0f | %.2f of 1-thread "
      "engine |\n",
      u1.images_per_s, u1.p50_ms, u1.p99_ms,
      u1.images_per_s / engine1.images_per_s);
  std::printf("| server | 1 | %.2f | %.0f | %.0f | %.2f of 1-thread engine |\n",
              s1.images_per_s, s1.p50_ms, s1.p99_ms,
              s1.images_per_s / engine1.images_per_s);
  std::printf("| server | 4 | %.2f | %.0f | %.0f | %.2f of 2-thread engine |\n",
              s4.images_per_s, s4.p50_ms, s4.p99_ms,
              s4.images_per_s / engine2.images_per_s);
  std::printf(
      "| server | 16 | %.2f | %.0f | %.0f | %.2f of 2-thread engine |\n",
      s16.images_per_s, s16.p50_ms, s16.p99_ms,
      s16.images_per_s / engine2.images_per_s);
  return 0;
}
