// The batch job against the server's own throughput on the same images:
// raw concurrent PseudoLabel calls with the images in memory, then
// `RunLabelJob` over the same images on disk (reading, writing PNGs and the
// manifest), with one server and with two. Prints a markdown table.
//
//   primaps_label_job_bench [--copies=N] [--concurrency=N]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "base/file_util.h"
#include "client/label_job.h"
#include "client/primaps_client.h"
#include "server/server.h"

namespace primaps {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::unique_ptr<Server> StartServer(int cpu_threads) {
  v1::ServerConfig config = DefaultServerConfig();
  config.set_listen("127.0.0.1:0");
  config.set_metrics_listen("");
  config.set_http_listen("");
  config.set_cpu_threads(cpu_threads);
  config.set_max_queue(256);
  return *Server::Create(config);
}

std::string Address(const Server& s) {
  return "127.0.0.1:" + std::to_string(s.port());
}

double RawCalls(const std::vector<std::string>& servers,
                const std::vector<std::string>& images, int concurrency) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      ClientOptions options;
      options.target = servers[t % servers.size()];
      auto client = *PrimapsClient::Create(options);
      for (size_t i = next++; i < images.size(); i = next++) {
        v1::ImageRequest request;
        request.mutable_image()->set_encoded(images[i]);
        if (!client->PseudoLabel(request).ok()) std::abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  return images.size() / Seconds(start);
}

double Job(const std::vector<std::string>& servers, const std::string& input,
           const std::string& output, int concurrency) {
  fs::remove_all(output);
  LabelJobOptions options;
  options.servers = servers;
  options.input = input;
  options.output = output;
  options.concurrency = concurrency;
  options.log_every = absl::Hours(1);
  auto summary = RunLabelJob(options);
  if (!summary.ok() || summary->failed > 0) std::abort();
  return summary->done / summary->seconds;
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  using namespace primaps;
  int copies = 10, concurrency = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--copies=", 0) == 0)
      (void)absl::SimpleAtoi(arg.substr(9), &copies);
    if (arg.rfind("--concurrency=", 0) == 0)
      (void)absl::SimpleAtoi(arg.substr(14), &concurrency);
  }
  std::vector<std::string> sources;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("../shared/data/demo", ec)) {
    if (auto b = ReadFile(e.path().string()); b.ok()) sources.push_back(*b);
  }
  if (auto b = ReadFile("tests/golden/fixtures/sample_scene.png"); b.ok())
    sources.push_back(*b);
  const fs::path dir = fs::temp_directory_path() / "primaps_label_bench";
  fs::remove_all(dir);
  fs::create_directories(dir / "in");
  std::vector<std::string> images;
  for (int c = 0; c < copies; ++c) {
    for (size_t s = 0; s < sources.size(); ++s) {
      images.push_back(sources[s]);
      std::ofstream(
          dir / "in" /
              ("img" + std::to_string(c) + "_" + std::to_string(s) + ".png"),
          std::ios::binary)
          << sources[s];
    }
  }
  std::fprintf(stderr, "%zu images, concurrency %d\n", images.size(),
               concurrency);
  double raw1, job1, raw2, job2;
  {
    auto server = StartServer(2);
    const std::vector<std::string> one = {Address(*server)};
    RawCalls(one, {images.begin(), images.begin() + 4}, 2);  // warm-up
    raw1 = RawCalls(one, images, concurrency);
    job1 = Job(one, (dir / "in").string(), (dir / "out").string(), concurrency);
    server->Drain(absl::Seconds(10));
  }
  {
    auto a = StartServer(1), b = StartServer(1);
    const std::vector<std::string> two = {Address(*a), Address(*b)};
    raw2 = RawCalls(two, images, concurrency);
    job2 = Job(two, (dir / "in").string(), (dir / "out").string(), concurrency);
    a->Drain(absl::Seconds(10));
    b->Drain(absl::Seconds(10));
  }
  fs::remove_all(dir);
  std::printf(
      "| servers | server's own throughput (img/s) | label job (img/s) | job / "
      "server |\n|---|---|---|---|\n");
  std::printf("| 1 (2 CPU threads) | %.2f | %.2f | %.2f |\n", raw1, job1,
              job1 / raw1);
  std::printf("| 2 (1 CPU thread each) | %.2f | %.2f | %.2f |\n", raw2, job2,
              job2 / raw2);
  return 0;
}
