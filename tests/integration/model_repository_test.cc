// A fleet on one model repository: three real primaps-server processes
// follow the versions published into it while four clients call them.
#include "server/model_repository.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/segmentation_head.h"
#include "tests/integration/server_process.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::MetricValue;
using ::primaps::testing::ServerProcess;
using ::primaps::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kPollSeconds = 2;

std::string HeadBytes(float scale) {
  std::mt19937 rng(static_cast<uint32_t>(scale * 1000));
  std::normal_distribution<float> normal;
  SegmentationHead head;
  head.classes = 5;
  head.dim = kBuiltinFeatureDim;
  head.backbone = "builtin";
  for (WeightNormConv* conv : {&head.theta_m, &head.theta_r}) {
    conv->v.resize(head.classes * head.dim);
    for (float& v : conv->v) v = scale * normal(rng);
    conv->g.assign(head.classes, 4.f);
  }
  return SerializeHeadCheckpoint(head);
}

// A head whose weights hold a NaN; the file itself is well formed.
std::string NanHeadBytes() {
  SegmentationHead head;
  head.classes = 5;
  head.dim = kBuiltinFeatureDim;
  head.backbone = "builtin";
  for (WeightNormConv* conv : {&head.theta_m, &head.theta_r}) {
    conv->v.assign(head.classes * head.dim, 0.5f);
    conv->g.assign(head.classes, 4.f);
  }
  head.theta_m.v[7] = std::nanf("");
  return SerializeHeadCheckpoint(head);
}

std::unique_ptr<PrimapsClient> Client(const std::string& address) {
  ClientOptions options;
  options.target = address;
  options.retries = 0;
  options.deadline = absl::Seconds(60);
  return *PrimapsClient::Create(options);
}

v1::ImageRequest Request(const std::string& image) {
  v1::ImageRequest request;
  request.mutable_image()->set_encoded(image);
  request.mutable_preprocess()->set_resize(64);
  request.mutable_preprocess()->set_crf(false);
  return request;
}

uint64_t ServedVersion(const std::string& address, const std::string& image) {
  auto response = Client(address)->PseudoLabel(Request(image));
  return response.ok() ? response->model().head_version() : 0;
}

// Waits until every server serves `version`; false after `limit`.
bool AllServe(const std::vector<std::string>& addresses, uint64_t version,
              const std::string& image, absl::Duration limit) {
  const absl::Time end = absl::Now() + limit;
  for (const std::string& address : addresses) {
    while (ServedVersion(address, image) != version) {
      if (absl::Now() > end) return false;
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  return true;
}

TEST(ModelRepositoryFleetTest, ThreeServersFollowOneRepository) {
  TempDir dir;
  const std::string repo = dir.path() + "/repo";
  ASSERT_EQ(*PublishToDirectory(repo, HeadBytes(1.f), ""), 1u);
  const std::vector<std::string> flags = {
      "--model_repository=" + repo,
      absl::StrCat("--poll_interval_s=", kPollSeconds), "--cpu_threads=1"};
  std::vector<std::unique_ptr<ServerProcess>> servers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<ServerProcess>(flags));
    ASSERT_TRUE(servers.back()->started()) << servers.back()->Log();
    addresses.push_back(servers.back()->address());
  }
  const std::string image =
      primaps::testing::Encode(primaps::testing::MakePattern(96, 80), ".png");
  for (const std::string& address : addresses)
    EXPECT_EQ(ServedVersion(address, image), 1u);

  // Four clients call the fleet throughout; no call may fail, and no
  // server's version may go backwards.
  std::atomic<bool> done{false};
  std::atomic<int> calls{0}, failures{0}, backwards{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      std::map<std::string, uint64_t> last;
      for (int i = c; !done; ++i) {
        const std::string& address = addresses[i % addresses.size()];
        auto response = Client(address)->PseudoLabel(Request(image));
        ++calls;
        if (!response.ok()) {
          ++failures;
          ADD_FAILURE() << response.status();
          continue;
        }
        const uint64_t version = response->model().head_version();
        if (version < last[address]) ++backwards;
        last[address] = version;
      }
    });
  }

  // A new version reaches every server within two poll intervals.
  ASSERT_EQ(*PublishToDirectory(repo, HeadBytes(2.f), "{}"), 2u);
  const absl::Time published = absl::Now();
  EXPECT_TRUE(AllServe(addresses, 2, image, absl::Seconds(2 * kPollSeconds)))
      << "after " << absl::Now() - published;

  // A truncated version and a NaN version are refused by all three; the
  // fleet keeps version 2.
  const std::string whole = HeadBytes(3.f);
  ASSERT_EQ(*PublishToDirectory(repo, whole.substr(0, whole.size() / 2), ""),
            3u);
  ASSERT_EQ(*PublishToDirectory(repo, NanHeadBytes(), ""), 4u);
  absl::SleepFor(absl::Seconds(3 * kPollSeconds));
  for (const auto& server : servers) {
    EXPECT_EQ(ServedVersion(server->address(), image), 2u);
    EXPECT_EQ(
        MetricValue(server->metrics_port(), "primaps_repository_refused_total"),
        2)
        << server->Log();
    EXPECT_THAT(server->Log(), HasSubstr("refused head " + repo + "/3"));
    EXPECT_THAT(server->Log(), HasSubstr("refused head " + repo + "/4"));
  }

  // The next good version is served again.
  ASSERT_EQ(*PublishToDirectory(repo, HeadBytes(5.f), ""), 5u);
  EXPECT_TRUE(AllServe(addresses, 5, image, absl::Seconds(2 * kPollSeconds)));
  done = true;
  for (auto& t : clients) t.join();
  EXPECT_GT(calls, 20);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(backwards, 0);

  // A server started afterwards serves the newest version at its first
  // request, and names where the head came from.
  ServerProcess late(flags);
  ASSERT_TRUE(late.started()) << late.Log();
  auto first = Client(late.address())->PseudoLabel(Request(image));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->model().head_version(), 5u);
  EXPECT_EQ(first->model().source(), "repository " + repo + "/5");
  // A client that needs a newer head than a server has is told so.
  v1::ImageRequest too_new = Request(image);
  too_new.set_min_head_version(6);
  auto behind = Client(late.address())->PseudoLabel(too_new);
  EXPECT_EQ(behind.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(behind.status().message()),
              HasSubstr("serves head version 5; the request needs version 6"));
}

// The repository's POLICY file pins a version: a rollback without a
// restart.
TEST(ModelRepositoryFleetTest, PolicyFilePinsAnOlderVersion) {
  TempDir dir;
  const std::string repo = dir.path() + "/repo";
  ASSERT_TRUE(PublishToDirectory(repo, HeadBytes(1.f), "").ok());
  ASSERT_TRUE(PublishToDirectory(repo, HeadBytes(2.f), "").ok());
  ServerProcess server({"--model_repository=" + repo,
                        absl::StrCat("--poll_interval_s=", kPollSeconds)});
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string image =
      primaps::testing::Encode(primaps::testing::MakePattern(96, 80), ".png");
  EXPECT_EQ(ServedVersion(server.address(), image), 2u);
  dir.Write("repo/POLICY", "pinned:1\n");
  EXPECT_TRUE(
      AllServe({server.address()}, 1, image, absl::Seconds(2 * kPollSeconds)));
}

// A writer killed (SIGKILL) at any point of a publication leaves no
// version half visible, and the next publication succeeds.
TEST(ModelRepositoryFleetTest, KilledWriterLeavesNoHalfVersion) {
  TempDir dir;
  const std::string repo = dir.path() + "/repo";
  // Large enough that writing takes a while: 64 MB.
  const std::string big(size_t{64} << 20, 'x');
  std::mt19937 rng(3);
  for (int round = 0; round < 6; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      for (;;) (void)PublishToDirectory(repo, big, "");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::uniform_int_distribution<int>(5, 400)(rng)));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    auto source = DirectoryModelSource(repo);
    auto versions = source->ListVersions();
    ASSERT_TRUE(versions.ok()) << versions.status();
    for (const uint64_t v : *versions) {
      auto head = source->ReadHead(v);
      ASSERT_TRUE(head.ok()) << "version " << v << ": " << head.status();
      EXPECT_EQ(head->size(), big.size()) << "version " << v;
    }
  }
  auto next = PublishToDirectory(repo, "a small head", "");
  ASSERT_TRUE(next.ok()) << next.status();
  for (const auto& entry : std::filesystem::directory_iterator(repo)) {
    EXPECT_NE(entry.path().filename().string().rfind(".incoming-", 0), 0u)
        << entry.path();
  }
}

}  // namespace
}  // namespace primaps
