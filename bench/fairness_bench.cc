// Small requests beside a flood of large ones: one client sends ProposeMasks
// on a small photo, one request at a time, while four others send requests
// at the default size limit (a 2048x1024 scene whole at resize 720: 16200
// patch tokens), retrying RESOURCE_EXHAUSTED after 50 ms. The small
// client's latency percentiles with the large requests limited to half the
// CPU pool (the default) and without a separate limit (before), on an
// in-process server with 2 CPU threads, in one run. Prints a markdown table.
//
//   primaps_fairness_bench [--seconds=S] [--small=PATH] [--large=PATH]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "base/file_util.h"
#include "client/primaps_client.h"
#include "server/server.h"

namespace primaps {
namespace {

using Clock = std::chrono::steady_clock;

struct Row {
  double small_p50_ms = 0, small_p99_ms = 0, small_max_ms = 0;
  int small_done = 0;
  int large_done = 0, large_refused = 0;
};

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since)
      .count();
}

// With `flood` false, the small client alone.
Row Measure(int max_large_in_flight, const std::string& small,
            const std::string& large, double seconds, bool flood_on) {
  v1::ServerConfig config = DefaultServerConfig();
  config.set_listen("127.0.0.1:0");
  config.set_metrics_listen("");
  config.set_http_listen("");
  config.set_cpu_threads(2);
  config.set_max_large_in_flight(max_large_in_flight);
  auto server = *Server::Create(config);
  const std::string address = "127.0.0.1:" + std::to_string(server->port());
  auto client = [&] {
    ClientOptions options;
    options.target = address;
    options.retries = 0;
    options.deadline = absl::Seconds(300);
    return *PrimapsClient::Create(options);
  };
  Row row;
  std::atomic<bool> stop{false};
  std::atomic<int> large_done{0}, large_refused{0};
  std::vector<std::thread> flood;
  for (int i = 0; i < (flood_on ? 4 : 0); ++i) {
    flood.emplace_back([&] {
      auto c = client();
      v1::ImageRequest request;
      request.mutable_image()->set_encoded(large);
      request.mutable_preprocess()->set_resize(720);
      request.mutable_preprocess()->set_crop(v1::CROP_MODE_FULL);
      while (!stop) {
        auto r = c->ProposeMasks(request);
        if (r.ok()) {
          ++large_done;
        } else {
          ++large_refused;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto c = client();
  v1::ImageRequest request;
  request.mutable_image()->set_encoded(small);
  std::vector<double> ms;
  const auto start = Clock::now();
  while (Ms(start) < seconds * 1000) {
    const auto t = Clock::now();
    if (c->ProposeMasks(request).ok()) ms.push_back(Ms(t));
  }
  stop = true;
  for (auto& t : flood) t.join();
  server->Drain(absl::Seconds(60));
  std::sort(ms.begin(), ms.end());
  row.small_done = static_cast<int>(ms.size());
  if (!ms.empty()) {
    row.small_p50_ms = ms[ms.size() / 2];
    row.small_p99_ms = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
    row.small_max_ms = ms.back();
  }
  row.large_done = large_done;
  row.large_refused = large_refused;
  return row;
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  double seconds = 30;
  std::string small_path = "../shared/data/demo/coco_example.jpg";
  std::string large_path = "../shared/data/demo/cityscapes_example.png";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--seconds=", 0) == 0)
      (void)absl::SimpleAtod(arg.substr(10), &seconds);
    if (arg.rfind("--small=", 0) == 0) small_path = arg.substr(8);
    if (arg.rfind("--large=", 0) == 0) large_path = arg.substr(8);
  }
  auto small = ReadFile(small_path);
  auto large = ReadFile(large_path);
  if (!small.ok() || !large.ok()) {
    std::fprintf(stderr, "need --small and --large images\n");
    return 2;
  }
  std::printf(
      "| large requests admitted at once | small p50 ms | small p99 ms | "
      "small max ms | small done | large done | large refused |\n"
      "|---|---|---|---|---|---|---|\n");
  const Row alone = Measure(1, *small, *large, seconds / 3, false);
  std::printf("| (no large requests) | %.0f | %.0f | %.0f | %d | 0 | 0 |\n",
              alone.small_p50_ms, alone.small_p99_ms, alone.small_max_ms,
              alone.small_done);
  for (int limit : {0, 1}) {
    const Row r = Measure(limit, *small, *large, seconds, true);
    std::printf("| %s | %.0f | %.0f | %.0f | %d | %d | %d |\n",
                limit == 0 ? "no separate limit (before)" : "1 (the default)",
                r.small_p50_ms, r.small_p99_ms, r.small_max_ms, r.small_done,
                r.large_done, r.large_refused);
    std::fflush(stdout);
  }
  const Row after = Measure(1, *small, *large, seconds / 3, false);
  std::printf(
      "| (no large requests, again) | %.0f | %.0f | %.0f | %d | 0 | 0 |\n",
      after.small_p50_ms, after.small_p99_ms, after.small_max_ms,
      after.small_done);
  return 0;
}
