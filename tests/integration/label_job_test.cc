// primaps-client label against real servers: faults, resume, shards.
#include "client/label_job.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_split.h"
#include "client/primaps_client.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "tests/integration/server_process.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

namespace fs = std::filesystem;
using ::primaps::testing::ReadText;
using ::primaps::testing::RequestsServed;
using ::primaps::testing::ServerProcess;
using ::primaps::testing::SpawnProcess;
using ::primaps::testing::TempDir;
using ::primaps::testing::WaitProcess;

constexpr int kImages = 240;

// kImages small scenes in nested folders, plus three corrupt files.
void MakeDataset(const std::string& dir) {
  std::mt19937 rng(11);
  for (int i = 0; i < kImages; ++i) {
    cv::Mat mat(48 + (i % 3) * 8, 64, CV_8UC3);
    const int split = 10 + static_cast<int>(rng() % 40);
    for (int y = 0; y < mat.rows; ++y) {
      for (int x = 0; x < mat.cols; ++x) {
        for (int c = 0; c < 3; ++c) {
          mat.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>(
              (x < split ? 40 : 190) + c * 20 + rng() % 30);
        }
      }
    }
    const std::string sub =
        dir + "/part" + std::to_string(i % 4) + (i % 8 == 0 ? "/deep" : "");
    fs::create_directories(sub);
    std::ofstream(sub + "/img" + std::to_string(i) + (i % 2 ? ".png" : ".jpg"),
                  std::ios::binary)
        << primaps::testing::Encode(mat, i % 2 ? ".png" : ".jpg");
  }
  std::ofstream(dir + "/part0/broken.png") << "not a png at all";
  std::ofstream(dir + "/part1/empty.jpg") << "";
  const std::string png =
      primaps::testing::Encode(primaps::testing::MakePattern(64, 64), ".png");
  std::ofstream(dir + "/part2/truncated.png", std::ios::binary)
      << png.substr(0, png.size() / 2);
}

int FreePort() {
  ServerProcess probe({});  // binds port 0 and tells us what it got
  const std::string address = probe.address();
  return std::stoi(address.substr(address.rfind(':') + 1));
}

std::vector<std::string> ServerFlags(int port) {
  // Small images keep the tests fast; the job does not care.
  return {"--listen=127.0.0.1:" + std::to_string(port), "--resize=64",
          "--cpu_threads=2"};
}

// Runs primaps-client with `args`; returns the pid (not waited for).
// Manifest entries by status (partial last lines are skipped).
std::map<std::string, std::set<std::string>> ManifestByStatus(
    const std::string& path) {
  std::map<std::string, std::set<std::string>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    if (entry.is_discarded()) continue;
    out[entry["status"].get<std::string>()].insert(
        entry["path"].get<std::string>());
  }
  return out;
}

// The manifest's "ok" entries counted by the server that answered them.
std::map<std::string, int> OkEntriesByServer(const std::string& path) {
  std::map<std::string, int> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    if (entry.is_discarded() || entry["status"] != "ok") continue;
    ++out[entry["server"].get<std::string>()];
  }
  return out;
}

int CountLines(const std::string& path) {
  std::ifstream in(path);
  return static_cast<int>(
      std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
}

// Every file under `dir` with a .png name is a complete, decodable label map.
int CheckAllPngsValid(const std::string& dir) {
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".png") continue;
    EXPECT_TRUE(IsCompletePng(entry.path().string())) << entry.path();
    EXPECT_TRUE(DecodeLabelPng(ReadText(entry.path().string())).ok())
        << entry.path();
    ++count;
  }
  return count;
}

class LabelJobTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeDataset(data_.path()); }
  TempDir data_, out_;
  // Logs of the processes a test starts: its own directory, never a name
  // shared with tests running beside it.
  TempDir logs_;
};

TEST_F(LabelJobTest, OutputsEqualOneShotCallsAndCorruptFilesAreRecorded) {
  ServerProcess server(ServerFlags(FreePort()));
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string log = logs_.path() + "/job.log";
  const int code = WaitProcess(SpawnProcess(
      PRIMAPS_CLIENT_BIN,
      {"label", "--server=" + server.address(), "--input=" + data_.path(),
       "--output=" + out_.path(), "--concurrency=6"},
      log));
  EXPECT_EQ(code, 1) << ReadText(log);  // three corrupt files
  const auto manifest =
      ManifestByStatus(out_.path() + "/manifest-0-of-1.jsonl");
  EXPECT_EQ(manifest.at("ok").size(), static_cast<size_t>(kImages));
  EXPECT_EQ(manifest.at("failed"),
            (std::set<std::string>{"part0/broken.png", "part1/empty.jpg",
                                   "part2/truncated.png"}));
  EXPECT_EQ(CheckAllPngsValid(out_.path()), kImages);
  // Each output is at its input's size, and the manifest says so.
  for (absl::string_view line :
       absl::StrSplit(ReadText(out_.path() + "/manifest-0-of-1.jsonl"), '\n',
                      absl::SkipEmpty())) {
    const auto entry = nlohmann::json::parse(std::string(line));
    if (entry["status"] != "ok") continue;
    EXPECT_EQ(entry["output"], "original") << line;
    EXPECT_EQ(entry["crop"], "full") << line;
    EXPECT_EQ(entry["input_size"], entry["output_size"]) << line;
    EXPECT_EQ(entry["backbone"], "builtin") << line;
    EXPECT_TRUE(entry.contains("checkpoint_digest")) << line;
  }
  // The same images one at a time through the unary call: identical.
  ClientOptions options;
  options.target = server.address();
  auto client = *PrimapsClient::Create(options);
  for (const std::string rel :
       {"part1/img1.png", "part0/deep/img0.jpg", "part3/img3.png"}) {
    v1::ImageRequest request;
    request.mutable_image()->set_encoded(ReadText(data_.path() + "/" + rel));
    request.mutable_preprocess()->set_output_size(v1::OUTPUT_SIZE_ORIGINAL);
    auto one_shot = client->PseudoLabel(request);
    ASSERT_TRUE(one_shot.ok());
    auto written = DecodeLabelPng(ReadText(
        out_.path() + "/" + fs::path(rel).replace_extension(".png").string()));
    ASSERT_TRUE(written.ok());
    ASSERT_EQ(written->width, static_cast<int>(one_shot->labels().width()));
    ASSERT_EQ(written->height, static_cast<int>(one_shot->labels().height()));
    // Compared as a whole; printing a mismatch would be megabytes.
    EXPECT_TRUE(std::string(written->labels.begin(), written->labels.end()) ==
                one_shot->labels().labels())
        << rel;
  }
}

TEST_F(LabelJobTest, ServerKilledAndRestartedMidJob) {
  const int port = FreePort();
  auto server = std::make_unique<ServerProcess>(ServerFlags(port));
  ASSERT_TRUE(server->started()) << server->Log();
  const std::string manifest = out_.path() + "/manifest-0-of-1.jsonl";
  const pid_t job =
      SpawnProcess(PRIMAPS_CLIENT_BIN,
                   {"label", "--server=127.0.0.1:" + std::to_string(port),
                    "--input=" + data_.path(), "--output=" + out_.path(),
                    "--concurrency=4", "--retries=8"},
                   logs_.path() + "/job.log");
  while (CountLines(manifest) < kImages / 4)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server->Stop(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  server = std::make_unique<ServerProcess>(ServerFlags(port));
  ASSERT_TRUE(server->started()) << server->Log();
  EXPECT_EQ(WaitProcess(job), 1);  // only the corrupt files failed
  const auto entries = ManifestByStatus(manifest);
  EXPECT_EQ(entries.at("ok").size(), static_cast<size_t>(kImages));
  EXPECT_EQ(entries.at("failed").size(), 3u);
  EXPECT_EQ(CheckAllPngsValid(out_.path()), kImages);
}

TEST_F(LabelJobTest, OneOfTwoServersKilledMidJobFailsOver) {
  // Both servers take work; one dies for good a quarter of the way in and
  // the job finishes on the other (its calls on the dead one are retried).
  ServerProcess survivor(ServerFlags(FreePort()));
  auto victim = std::make_unique<ServerProcess>(ServerFlags(FreePort()));
  ASSERT_TRUE(survivor.started()) << survivor.Log();
  ASSERT_TRUE(victim->started()) << victim->Log();
  const std::string manifest = out_.path() + "/manifest-0-of-1.jsonl";
  const std::string log = logs_.path() + "/failover.log";
  const pid_t job = SpawnProcess(
      PRIMAPS_CLIENT_BIN,
      {"label", "--server=" + victim->address() + "," + survivor.address(),
       "--input=" + data_.path(), "--output=" + out_.path(), "--concurrency=4",
       "--retries=8"},
      log);
  while (CountLines(manifest) < kImages / 4)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GT(RequestsServed(victim->metrics_port()), 0);
  victim->Stop(SIGKILL);
  EXPECT_EQ(WaitProcess(job), 1) << ReadText(log);  // only the corrupt files
  // Every image is credited to one of the two, and the survivor, which
  // served all but the victim's first quarter or so, really served the
  // ones credited to it. (A count of the victim's requests read before the
  // kill is no bound: it may answer more between the read and the kill.)
  std::map<std::string, int> by_server = OkEntriesByServer(manifest);
  const int by_survivor = by_server[survivor.address()];
  const int by_victim = by_server[victim->address()];
  EXPECT_EQ(by_survivor + by_victim, kImages);
  EXPECT_GT(by_victim, 0);
  EXPECT_GE(by_survivor, kImages / 2);
  EXPECT_GE(RequestsServed(survivor.metrics_port()), by_survivor);
  const auto entries = ManifestByStatus(manifest);
  EXPECT_EQ(entries.at("ok").size(), static_cast<size_t>(kImages));
  EXPECT_EQ(entries.at("failed").size(), 3u);
  EXPECT_EQ(CheckAllPngsValid(out_.path()), kImages);
}

TEST_F(LabelJobTest, ClientKilledAndRerunResumesWithoutRecomputing) {
  ServerProcess server(ServerFlags(FreePort()));
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string manifest = out_.path() + "/manifest-0-of-1.jsonl";
  const std::vector<std::string> args = {
      "label", "--server=" + server.address(), "--input=" + data_.path(),
      "--output=" + out_.path(), "--concurrency=4"};
  const pid_t job =
      SpawnProcess(PRIMAPS_CLIENT_BIN, args, logs_.path() + "/job1.log");
  while (CountLines(manifest) < kImages / 3)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::kill(job, SIGKILL);
  WaitProcess(job);
  // Whatever is at an output name is complete; only temporary files may be
  // partial, and they never have a .png name.
  const int complete_before = CheckAllPngsValid(out_.path());
  EXPECT_GT(complete_before, 0);
  EXPECT_LT(complete_before, kImages);
  const std::string log = logs_.path() + "/job2.log";
  EXPECT_EQ(WaitProcess(SpawnProcess(PRIMAPS_CLIENT_BIN, args, log)), 1)
      << ReadText(log);
  EXPECT_THAT(ReadText(log),
              ::testing::HasSubstr(
                  std::to_string(kImages - complete_before) + " labelled, " +
                  std::to_string(complete_before) + " already done"));
  EXPECT_EQ(CheckAllPngsValid(out_.path()), kImages);
  for (const auto& entry : fs::recursive_directory_iterator(out_.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << entry.path();
  }
}

TEST_F(LabelJobTest, ShardsAreDisjointAndTogetherComplete) {
  ServerProcess server(ServerFlags(FreePort()));
  ASSERT_TRUE(server.started()) << server.Log();
  std::set<std::string> all;
  size_t total = 0;
  for (int shard = 0; shard < 3; ++shard) {
    std::vector<std::string> args = {
        "label", "--server=" + server.address(), "--input=" + data_.path(),
        "--output=" + out_.path(), "--concurrency=4"};
    if (shard == 2) {
      // Kubernetes Indexed Jobs pass the index in the environment.
      ::setenv("JOB_COMPLETION_INDEX", "2", 1);
      args.push_back("--shard=/3");
    } else {
      args.push_back("--shard=" + std::to_string(shard) + "/3");
    }
    WaitProcess(
        SpawnProcess(PRIMAPS_CLIENT_BIN, args, logs_.path() + "/shard.log"));
    ::unsetenv("JOB_COMPLETION_INDEX");
    const auto entries = ManifestByStatus(
        out_.path() + "/manifest-" + std::to_string(shard) + "-of-3.jsonl");
    for (const auto& [status, paths] : entries) {
      for (const std::string& p : paths) {
        EXPECT_TRUE(all.insert(p).second) << p << " is in two shards";
        ++total;
      }
    }
  }
  EXPECT_EQ(total, static_cast<size_t>(kImages + 3));
  EXPECT_EQ(CheckAllPngsValid(out_.path()), kImages);
}

TEST_F(LabelJobTest, ReferenceLayoutAndListFiles) {
  ServerProcess server(ServerFlags(FreePort()));
  ASSERT_TRUE(server.started()) << server.Log();
  auto original = DecodeImage(ReadText(data_.path() + "/part1/img1.png"));
  ASSERT_TRUE(original.ok());
  TempDir gts;
  fs::create_directories(gts.path() + "/part1");
  LabelMap truth{original->width, original->height,
                 std::vector<uint8_t>(static_cast<size_t>(original->width) *
                                      original->height)};
  for (size_t i = 0; i < truth.labels.size(); ++i)
    truth.labels[i] = static_cast<uint8_t>(i % 7);
  std::ofstream(gts.path() + "/part1/img1.png", std::ios::binary)
      << *EncodeLabelPng(truth);
  const std::string list = data_.path() + "/list.txt";
  std::ofstream(list) << "# two images\npart1/img1.png\n\npart3/img3.png\n";
  LabelJobOptions options;
  options.servers = {server.address()};
  options.input = list;
  options.output = out_.path();
  options.layout = "reference";
  options.labels_dir = gts.path();
  options.resize = 64;
  auto summary = RunLabelJob(options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->total, 2);
  EXPECT_EQ(summary->done, 2);
  EXPECT_TRUE(IsCompletePng(out_.path() + "/pseudos/part1/img1.png"));
  EXPECT_TRUE(IsCompletePng(out_.path() + "/pseudos/part3/img3.png"));
  // imgs/, pseudos/ and gts/ all hold the training crop: Pillow's resize
  // and the center crop, labels with Pillow's nearest.
  auto img = DecodeImage(ReadText(out_.path() + "/imgs/part1/img1.png"));
  ASSERT_TRUE(img.ok());
  EXPECT_EQ(img->pixels,
            ResizeAndCropAntialias(*original, 64, CropMode::kCenter).pixels);
  auto pseudo =
      DecodeLabelPng(ReadText(out_.path() + "/pseudos/part1/img1.png"));
  ASSERT_TRUE(pseudo.ok());
  EXPECT_EQ(pseudo->width, 64);
  EXPECT_EQ(pseudo->height, 64);
  auto gt = DecodeLabelPng(ReadText(out_.path() + "/gts/part1/img1.png"));
  ASSERT_TRUE(gt.ok());
  EXPECT_EQ(gt->labels, ResizeAndCropLabels(truth, 64, CropMode::kCenter,
                                            LabelResize::kPillowNearest)
                            .labels);
  EXPECT_FALSE(fs::exists(out_.path() + "/gts/part3/img3.png"));
}

TEST(LabelJobUnitTest, ShardOfIsStableAndSpread) {
  EXPECT_EQ(ShardOf("a/b.png", 1), 0);
  EXPECT_EQ(ShardOf("a/b.png", 7), ShardOf("a/b.png", 7));
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 400; ++i)
    ++counts[ShardOf("dir/img" + std::to_string(i) + ".jpg", 4)];
  for (int c : counts) EXPECT_GT(c, 60);
}

}  // namespace
}  // namespace primaps
