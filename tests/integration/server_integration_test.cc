// The real primaps-server binary, driven by the real client library.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/image/image_decode.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"
#include "engine/segmentation_head.h"
#include "tests/integration/server_process.h"
#include "tests/unit/cmyk_jpeg.h"
#include "tests/unit/test_heads.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::HttpGet;
using ::primaps::testing::MetricValue;
using ::primaps::testing::ResidentBytes;
using ::primaps::testing::ServerProcess;
using ::primaps::testing::TempDir;
using ::testing::HasSubstr;

const char kToken[] = "s3cret-admin-token";

std::string Demo(const char* name) {
  return primaps::testing::ReadBinary(primaps::testing::DemoImagePath(name));
}

// A small generated photo-like image (so tests do not depend on the demos).
std::string Scene(int seed, int w = 160, int h = 120) {
  return primaps::testing::RegionsScene(seed, w, h);
}

std::string HeadBytes(int classes, float scale) {
  return primaps::testing::RandomBuiltinHeadBytes(
      classes, scale, static_cast<uint32_t>(scale * 1000));
}

std::unique_ptr<PrimapsClient> Client(const ServerProcess& server,
                                      const std::string& token = kToken,
                                      int retries = 3) {
  ClientOptions options;
  options.target = server.address();
  options.admin_token = token;
  options.retries = retries;
  options.deadline = absl::Seconds(60);
  return *PrimapsClient::Create(options);
}

v1::ImageRequest Request(const std::string& bytes, int resize = 0,
                         bool crf = true) {
  v1::ImageRequest request;
  request.mutable_image()->set_encoded(bytes);
  request.mutable_preprocess()->set_resize(resize);
  request.mutable_preprocess()->set_crf(crf);
  return request;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ = dir_.Write("token", std::string(kToken) + "\n");
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--admin_token_file=" + token_file_, "--checkpoint_dir=" + dir_.path(),
        "--cpu_threads=2", "--max_queue_delay_ms=2", "--drain_grace_ms=1000"});
    ASSERT_TRUE(server_->started()) << server_->Log();
  }

  TempDir dir_;
  std::string token_file_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ServerTest, ProposeMasksEqualsTheEngineBitForBit) {
  const std::string bytes =
      Demo("coco_example.jpg").empty() ? Scene(1) : Demo("coco_example.jpg");
  auto client = Client(*server_);
  // ProposeMasks resizes with Pillow's antialiased filter unless the request
  // asks for torch's bilinear one.
  for (const auto filter :
       {v1::RESIZE_FILTER_UNSPECIFIED, v1::RESIZE_FILTER_BILINEAR}) {
    SCOPED_TRACE(filter);
    v1::ImageRequest request = Request(bytes);
    request.mutable_preprocess()->set_resize_filter(filter);
    auto response = client->ProposeMasks(request);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->model().backbone(), "builtin");
    EXPECT_EQ(response->model().head_version(), 0u);
    // The engine, called directly on the same image.
    auto rgb = DecodeImage(bytes);
    PreprocessOptions options;
    options.filter = filter == v1::RESIZE_FILTER_BILINEAR
                         ? ResizeFilter::kBilinear
                         : ResizeFilter::kAntialias;
    auto image = Preprocess(*rgb, options);
    auto features = CreateBuiltinBackbone()->Extract({&*image});
    auto direct = ComputePriMaPs((*features)[0], *image, PriMaPsOptions{});
    ASSERT_TRUE(direct.ok());
    EXPECT_EQ(response->mask_count(),
              static_cast<uint32_t>(direct->proposals.num_masks));
    EXPECT_EQ(response->masks().labels(),
              std::string(direct->mask_labels.labels.begin(),
                          direct->mask_labels.labels.end()));
    uint64_t area = 0;
    for (uint64_t a : response->mask_area()) area += a;
    EXPECT_EQ(area, 320u * 320u);
  }
}

// A normalized tensor skips preprocessing: the features of Preprocess's
// output sent as a tensor equal those of the image it came from.
TEST_F(ServerTest, NormalizedTensorInputEqualsItsImage) {
  auto client = Client(*server_);
  const std::string bytes = Scene(4);
  v1::FeatureRequest from_image;
  from_image.mutable_image()->set_encoded(bytes);
  from_image.mutable_preprocess()->set_resize_filter(
      v1::RESIZE_FILTER_BILINEAR);
  auto want = client->ExtractFeatures(from_image);
  ASSERT_TRUE(want.ok()) << want.status();

  auto rgb = DecodeImage(bytes);
  auto image = Preprocess(*rgb, PreprocessOptions{});
  ASSERT_TRUE(image.ok());
  v1::FeatureRequest from_tensor;
  v1::NormalizedTensor* t = from_tensor.mutable_image()->mutable_tensor();
  t->set_height(image->height);
  t->set_width(image->width);
  t->set_data(image->data.data(), image->data.size() * sizeof(float));
  auto got = client->ExtractFeatures(from_tensor);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data(), want->data());

  // Bad tensors: not patch multiples, the wrong byte count, a NaN.
  v1::FeatureRequest bad = from_tensor;
  bad.mutable_image()->mutable_tensor()->set_width(image->width - 3);
  auto refused = client->ExtractFeatures(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("multiples of builtin's patch size 8"));
  bad = from_tensor;
  bad.mutable_image()->mutable_tensor()->mutable_data()->resize(100);
  refused = client->ExtractFeatures(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("image.tensor.data holds 100 bytes"));
  bad = from_tensor;
  const float nan = std::nanf("");
  bad.mutable_image()->mutable_tensor()->mutable_data()->replace(
      40, sizeof(float), reinterpret_cast<const char*>(&nan), sizeof(float));
  refused = client->ExtractFeatures(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("NaN or Inf"));
}

TEST_F(ServerTest, PseudoLabelsFeaturesAndStreams) {
  auto client = Client(*server_);
  auto pseudo = client->PseudoLabel(Request(Scene(2)));
  ASSERT_TRUE(pseudo.ok()) << pseudo.status();
  EXPECT_GE(pseudo->mask_count(), 2u);
  // Without a head, mask k > 0 keeps id k; background is 255.
  for (size_t i = 0; i < pseudo->labels().labels().size(); ++i) {
    const uint8_t mask = pseudo->masks().labels()[i],
                  label = pseudo->labels().labels()[i];
    ASSERT_EQ(label, mask == 0 ? 255 : mask);
  }
  // Features, float16 on the wire.
  v1::FeatureRequest features;
  features.mutable_image()->set_encoded(Scene(3));
  features.set_type(v1::FEATURE_TYPE_FLOAT16);
  features.set_masks(true);
  auto f = client->ExtractFeatures(features);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->dim(), static_cast<uint32_t>(kBuiltinFeatureDim));
  EXPECT_EQ(f->data().size(), 2u * f->dim() * f->height() * f->width());
  EXPECT_GT(f->soft_masks().count(), 0u);

  // ExtractFeatures with several images: answers in request order.
  {
    grpc::ClientContext context;
    auto stream = client->stub()->ExtractFeatures(&context);
    for (int i = 0; i < 5; ++i) {
      v1::FeatureRequest r;
      r.set_request_id("img" + std::to_string(i));
      r.mutable_image()->set_encoded(Scene(10 + i, 96 + 16 * i, 80));
      ASSERT_TRUE(stream->Write(r));
    }
    stream->WritesDone();
    v1::FeatureResponse r;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(stream->Read(&r));
      EXPECT_EQ(r.request_id(), "img" + std::to_string(i));
    }
    EXPECT_FALSE(stream->Read(&r));
    EXPECT_TRUE(stream->Finish().ok());
  }
  // StreamPseudoLabels: a corrupt image gets an error entry, the rest go on.
  {
    grpc::ClientContext context;
    auto stream = client->stub()->StreamPseudoLabels(&context);
    for (int i = 0; i < 6; ++i) {
      v1::ImageRequest r = Request(
          i == 3 ? std::string("not an image") : Scene(20 + i), 96, false);
      r.set_request_id("s" + std::to_string(i));
      ASSERT_TRUE(stream->Write(r));
    }
    stream->WritesDone();
    v1::PseudoLabelStreamResponse r;
    std::set<std::string> ok, failed;
    while (stream->Read(&r)) {
      if (r.has_error()) {
        failed.insert(r.request_id());
        EXPECT_EQ(r.error().code(),
                  static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        EXPECT_THAT(r.error().message(), HasSubstr("unsupported image format"));
      } else {
        ok.insert(r.request_id());
        EXPECT_EQ(r.pseudo_label().request_id(), r.request_id());
      }
    }
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(ok.size(), 5u);
    EXPECT_EQ(failed, std::set<std::string>{"s3"});
  }
}

TEST_F(ServerTest, SegmentNeedsAHeadAndAdminNeedsTheToken) {
  auto client = Client(*server_);
  EXPECT_EQ(client->Segment(Request(Scene(4))).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Auth: no token, wrong token.
  auto anonymous = Client(*server_, "");
  const absl::Status anonymous_status = anonymous->GetModelStatus().status();
  EXPECT_EQ(anonymous_status.code(), absl::StatusCode::kUnauthenticated)
      << anonymous_status;
  auto wrong = Client(*server_, "guess");
  EXPECT_EQ(wrong->GetModelStatus().status().code(),
            absl::StatusCode::kPermissionDenied);
  // Load inline, then by path; a path escaping the directory is refused.
  v1::LoadCheckpointRequest load;
  load.set_data(HeadBytes(5, 1.f));
  auto loaded = client->LoadCheckpoint(load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model().head_version(), 1u);
  EXPECT_EQ(loaded->model().classes(), 5u);
  dir_.Write("second.safetensors", HeadBytes(5, 2.f));
  load.set_path("second.safetensors");
  EXPECT_EQ(client->LoadCheckpoint(load)->model().head_version(), 2u);
  load.set_path("../../etc/passwd");
  EXPECT_EQ(client->LoadCheckpoint(load).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto segmentation = client->Segment(Request(Scene(4)));
  ASSERT_TRUE(segmentation.ok()) << segmentation.status();
  EXPECT_EQ(segmentation->classes(), 5u);
  EXPECT_EQ(segmentation->model().head_version(), 2u);
  for (char c : segmentation->labels().labels())
    ASSERT_LT(static_cast<uint8_t>(c), 5);
  auto rollback = client->Rollback();
  ASSERT_TRUE(rollback.ok());
  EXPECT_EQ(rollback->model().head_version(), 3u);
  EXPECT_EQ(rollback->model().checkpoint_digest(),
            loaded->model().checkpoint_digest());
  auto status = client->GetModelStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->refused_swaps(), 1u);
  // The token never appears in the log.
  EXPECT_THAT(server_->Log(), ::testing::Not(HasSubstr(kToken)));
}

TEST_F(ServerTest, HotSwapsUnderLoadLoseNothing) {
  auto admin = Client(*server_);
  v1::LoadCheckpointRequest load;
  load.set_data(HeadBytes(4, 1.f));
  ASSERT_TRUE(admin->LoadCheckpoint(load).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, calls{0}, regressions{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto client = Client(*server_);
      uint64_t last = 0;
      const std::string image = Scene(30 + t, 96, 96);
      while (!stop) {
        auto r = client->PseudoLabel(Request(image, 64, false));
        ++calls;
        if (!r.ok()) {
          ++failures;
          continue;
        }
        if (r->model().head_version() < last) ++regressions;
        last = r->model().head_version();
      }
    });
  }
  int swaps = 0;
  for (int i = 0; i < 24; ++i) {
    load.set_data(HeadBytes(4, 1.f + i));
    if (admin->LoadCheckpoint(load).ok()) ++swaps;
    if (i == 10) {
      // A corrupt checkpoint in the middle: refused, serving goes on.
      load.set_data("corrupt checkpoint bytes");
      EXPECT_EQ(admin->LoadCheckpoint(load).status().code(),
                absl::StatusCode::kInvalidArgument);
    }
    // Let at least one more call finish before the next swap, so that calls
    // and swaps interleave however slow the machine (a fixed pause gave too
    // few calls under ASan on a loaded machine).
    const int before = calls;
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (calls == before && absl::Now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(swaps, 24);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(regressions, 0);
  EXPECT_GT(calls, 20);
  EXPECT_EQ(admin->GetModelStatus()->model().head_version(), 25u);
}

TEST_F(ServerTest, BadInputGetsAClearErrorAndTheServerStaysHealthy) {
  auto client = Client(*server_);
  std::string bomb =
      primaps::testing::Encode(primaps::testing::MakePattern(8, 8), ".png");
  for (int i = 0; i < 4; ++i)
    bomb[16 + i] = bomb[20 + i] = static_cast<char>(70000 >> (24 - 8 * i));
  struct Case {
    v1::ImageRequest request;
    absl::StatusCode code;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back(
      {Request(bomb), absl::StatusCode::kInvalidArgument, "70000x70000"});
  cases.push_back({Request(""), absl::StatusCode::kInvalidArgument,
                   "image.encoded is empty"});
  cases.push_back({v1::ImageRequest(), absl::StatusCode::kInvalidArgument,
                   "image is missing"});
  v1::ImageRequest nan = Request(Scene(5));
  nan.mutable_preprocess()->set_threshold(NAN);
  cases.push_back({nan, absl::StatusCode::kInvalidArgument, "threshold"});
  v1::ImageRequest crop = Request(Scene(5));
  crop.mutable_preprocess()->set_crop(static_cast<v1::CropMode>(42));
  cases.push_back(
      {crop, absl::StatusCode::kInvalidArgument, "preprocess.crop is 42"});
  v1::ImageRequest raw;
  raw.mutable_image()->mutable_raw()->set_width(4);
  raw.mutable_image()->mutable_raw()->set_height(4);
  raw.mutable_image()->mutable_raw()->set_channels(3);
  raw.mutable_image()->mutable_raw()->set_pixels("short");
  cases.push_back(
      {raw, absl::StatusCode::kInvalidArgument, "needs 48 bytes, got 5"});
  cases.push_back({Request(Scene(5), 100000),
                   absl::StatusCode::kInvalidArgument, "preprocess.resize"});
  for (const Case& c : cases) {
    auto r = client->ProposeMasks(c.request);
    EXPECT_EQ(r.status().code(), c.code) << c.message;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message));
    EXPECT_EQ(*client->Health(), "SERVING");
    EXPECT_TRUE(client->ProposeMasks(Request(Scene(6), 64, false)).ok());
  }
}

TEST_F(ServerTest, CmykJpegIsServed) {
  const int w = 96, h = 64;
  std::vector<uint8_t> cmyk(w * h * 4, 255);
  for (int i = 0; i < w * h / 2; ++i) cmyk[4 * i + 1] = 40;  // magenta top
  auto response = Client(*server_)->ProposeMasks(
      Request(primaps::testing::EncodeCmykJpeg(cmyk, w, h), 64, false));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_GE(response->mask_count(), 1u);
}

// A message over --max_message_bytes is refused by gRPC itself with
// RESOURCE_EXHAUSTED naming both sizes; the server keeps serving.
TEST(ServerLimitsTest, OversizedMessageIsRefused) {
  ServerProcess server({"--max_message_bytes=1048576", "--cpu_threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  auto client = Client(server, kToken, /*retries=*/0);
  auto r = client->ProposeMasks(Request(std::string(2 << 20, 'x')));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("larger than max"));
  EXPECT_EQ(*client->Health(), "SERVING");
  EXPECT_TRUE(client->ProposeMasks(Request(Scene(6), 64, false)).ok());
}

// --max_masks caps PriMaPs' proposals; a decomposition it ends before 95%
// coverage counts in primaps_mask_cap_hits_total. Out of range, the server
// does not start.
TEST(ServerLimitsTest, MaskCapIsAFlagAndItsHitsAreCounted) {
  ServerProcess capped({"--max_masks=1", "--cpu_threads=2"});
  ASSERT_TRUE(capped.started()) << capped.Log();
  auto client = Client(capped, kToken, /*retries=*/0);
  auto masks = client->ProposeMasks(Request(Scene(6), 64, false));
  ASSERT_TRUE(masks.ok()) << masks.status();
  EXPECT_EQ(masks->mask_count(), 1u);
  EXPECT_EQ(MetricValue(capped.metrics_port(), "primaps_mask_cap_hits_total"),
            1);
  ServerProcess refused({"--max_masks=0"});
  EXPECT_FALSE(refused.started());
  EXPECT_THAT(refused.Log(),
              HasSubstr("--max_masks is 0; must be in [1, 254]"));
}

// Far more messages on a stream than the server takes at once, written
// without reading any answer: the server reads at most 8 ahead, so flow
// control stalls the writer instead of the server buffering the stream;
// other clients are served meanwhile, and every answer arrives at the end.
TEST_F(ServerTest, FloodedStreamIsThrottledNotBuffered) {
  // Label maps of 320x240 (77 KB each): 300 of them are more than the
  // transport buffers hold, so an unread stream stalls the server's writes.
  constexpr int kMessages = 300;
  const std::string image = Scene(9, 320, 240);
  auto client = Client(*server_);
  for (int i = 0; i < 4; ++i)  // warm-up: pools and buffers at this size
    ASSERT_TRUE(client->PseudoLabel(Request(image, 240, false)).ok());
  const double rss_before = ResidentBytes(server_->pid()) / 1e6;
  grpc::ClientContext context;
  auto stream = client->stub()->StreamPseudoLabels(&context);
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < kMessages; ++i) {
      v1::ImageRequest r = Request(image, 240, false);
      r.set_request_id("f" + std::to_string(i));
      if (!stream->Write(r)) return;
      ++written;
    }
    stream->WritesDone();
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const int written_while_unread = written.load();
  EXPECT_LT(written_while_unread, kMessages);  // the writer is held back
  EXPECT_EQ(*client->Health(), "SERVING");
  EXPECT_TRUE(client->ProposeMasks(Request(Scene(6), 64, false)).ok());
  const double rss_flooded = ResidentBytes(server_->pid()) / 1e6;
  std::set<std::string> answered;
  v1::PseudoLabelStreamResponse response;
  while (stream->Read(&response)) {
    EXPECT_FALSE(response.has_error()) << response.error().message();
    answered.insert(response.request_id());
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(answered.size(), static_cast<size_t>(kMessages));
// 300 unread images would be 45 MB of requests and 23 MB of answers; the
// server holds 8 in flight plus transport buffers.
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine inflates RSS
  EXPECT_LT(rss_flooded - rss_before, 50)
      << rss_before << " -> " << rss_flooded;
#endif
  std::printf(
      "flooded stream: %d of %d written while unread; RSS %.1f -> %.1f MB\n",
      written_while_unread, kMessages, rss_before, rss_flooded);
}

// Connections that send nothing (a stuck scraper, a port scan) each hold a
// worker of the metrics endpoint, which has enough for a scrape to go
// through at once beside 50 of them.
TEST_F(ServerTest, MetricsStayFastWithIdleConnections) {
  std::vector<int> idle;
  for (int i = 0; i < 50; ++i) {
    const int fd = primaps::testing::ConnectLoopback(server_->metrics_port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  double worst_ms = 0;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::string body = HttpGet(server_->metrics_port(), "/metrics");
    const double ms = std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - start)
                          .count();
    EXPECT_THAT(body, HasSubstr("primaps_active_calls"));
    worst_ms = std::max(worst_ms, ms);
  }
  std::printf("scrape beside 50 idle connections: at most %.1f ms\n", worst_ms);
  EXPECT_LT(worst_ms, 100);
  for (int fd : idle) ::close(fd);
}

TEST_F(ServerTest, MetricsAreScrapedAndValid) {
  auto client = Client(*server_);
  auto served = client->ProposeMasks(Request(Scene(7), 64, false));
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->model().precision(), "fp32");
  EXPECT_FALSE(client->ProposeMasks(Request("bad")).ok());
  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_THAT(metrics, HasSubstr("primaps_backbone_info{backbone=\"builtin\","
                                 "precision=\"fp32\"} 1"));
  EXPECT_THAT(
      metrics,
      HasSubstr(
          "primaps_requests_total{code=\"OK\",method=\"ProposeMasks\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("primaps_requests_total{code=\"INVALID_"
                                 "ARGUMENT\",method=\"ProposeMasks\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("primaps_batch_size_count"));
  EXPECT_THAT(metrics, HasSubstr("primaps_process_resident_memory_bytes"));
  EXPECT_THAT(metrics, HasSubstr("primaps_model_version 0"));
  // Each stage of the good request was timed.
  for (const char* stage : {"decode", "preprocess", "queue", "forward",
                            "proposals", "labels", "encode"}) {
    EXPECT_THAT(metrics, HasSubstr(absl::StrCat("primaps_stage_seconds_count{"
                                                "stage=\"",
                                                stage, "\"} 1")))
        << stage;
  }
  EXPECT_THAT(metrics,
              ::testing::Not(HasSubstr(dir_.path())));  // no file paths
  if (::system("command -v promtool > /dev/null") != 0)
    GTEST_SKIP() << "promtool not installed";
  const std::string file = dir_.Write("metrics.txt", metrics);
  EXPECT_EQ(::system(("promtool check metrics < " + file).c_str()), 0);
}

TEST_F(ServerTest, SigtermDrainsInFlightCallsThenRefuses) {
  // Slow calls: big images with the CRF.
  const std::string image = Scene(8, 900, 700);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&] {
      auto client = Client(*server_, kToken, /*retries=*/0);
      auto r = client->ProposeMasks(Request(image, 480, true));
      (r.ok() ? ok : failed)++;
    });
  }
  std::this_thread::sleep_for(
      std::chrono::milliseconds(300));  // calls are in flight
  const std::string address = server_->address();
  auto watcher = Client(*server_, kToken, /*retries=*/0);
  EXPECT_EQ(*watcher->Health(), "SERVING");
  std::thread stopper(
      [&] { EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Log(); });
  // During the grace period health says NOT_SERVING and calls still work.
  bool saw_not_serving = false;
  for (int i = 0; i < 100 && !saw_not_serving; ++i) {
    auto health = watcher->Health();
    saw_not_serving = health.ok() && *health == "NOT_SERVING";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(saw_not_serving);
  stopper.join();
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(failed, 0);
  EXPECT_THAT(server_->Log(), HasSubstr("drained; 0 calls still active"));
  ClientOptions options;
  options.target = address;
  options.retries = 0;
  options.deadline = absl::Seconds(2);
  auto after =
      (*PrimapsClient::Create(options))->ProposeMasks(Request(Scene(9)));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace primaps

namespace primaps {
namespace {

TEST(OverloadTest, RefusesBeyondMaxQueueAndRecovers) {
  ServerProcess server({"--max_queue=2", "--cpu_threads=1", "--max_batch=1"});
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string image = Scene(40, 640, 480);
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 10; ++i) {
    callers.emplace_back([&] {
      auto client = Client(server, kToken, /*retries=*/0);
      auto r = client->ProposeMasks(Request(image, 320, true));
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == absl::StatusCode::kResourceExhausted) {
        ++exhausted;
        EXPECT_THAT(std::string(r.status().message()), HasSubstr("limit 2"));
      } else {
        ++other;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_GE(ok, 2);
  EXPECT_GE(exhausted, 1);
  EXPECT_EQ(other, 0);
  // Afterwards the server serves normally.
  auto client = Client(server);
  EXPECT_EQ(*client->Health(), "SERVING");
  EXPECT_TRUE(client->ProposeMasks(Request(Scene(41), 64, false)).ok());
}

// --max_backbone_queue bounds the images waiting for the backbone apart from
// --max_queue: with batches that wait 1.5 s to fill, the third of six
// concurrent requests finds two images waiting and is refused.
TEST(OverloadTest, BackboneQueueHasItsOwnLimit) {
  ServerProcess server({"--max_backbone_queue=2", "--max_batch=8",
                        "--max_queue_delay_ms=1500", "--cpu_threads=4"});
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string image = Scene(42, 96, 96);
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 6; ++i) {
    callers.emplace_back([&] {
      auto client = Client(server, kToken, /*retries=*/0);
      auto r = client->ProposeMasks(Request(image, 64, false));
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == absl::StatusCode::kResourceExhausted) {
        ++exhausted;
        EXPECT_THAT(std::string(r.status().message()),
                    HasSubstr("waiting for the backbone (limit 2)"));
      } else {
        ++other;
        ADD_FAILURE() << r.status();
      }
    });
  }
  for (auto& t : callers) t.join();
  // Two at least wait and are served; a caller slowed past the first
  // batch's departure may find room again.
  EXPECT_GE(ok, 2);
  EXPECT_GE(exhausted, 1);
  EXPECT_EQ(other, 0);
}

}  // namespace
}  // namespace primaps

namespace primaps {
namespace {

// Model swaps that leak memory are the most reported bug of serving
// systems: 1,000 swaps from 8 threads must leave resident memory within
// 50 MB of where it was after a warm-up.
TEST(SwapChurnTest, ThousandSwapsDoNotGrowMemory) {
  TempDir dir;
  const std::string token = dir.Write("token", std::string(kToken));
  ServerProcess server({"--admin_token_file=" + token});
  ASSERT_TRUE(server.started()) << server.Log();
  // A realistic head: 27 classes of the built-in features.
  std::vector<std::string> heads;
  for (int i = 0; i < 8; ++i) heads.push_back(HeadBytes(27, 1.f + i));
  auto swap_from_threads = [&](int swaps_per_thread) {
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        auto client = Client(server);
        v1::LoadCheckpointRequest load;
        load.set_data(heads[t]);
        for (int i = 0; i < swaps_per_thread; ++i)
          failures += !client->LoadCheckpoint(load).ok();
      });
    }
    for (auto& t : threads) t.join();
    return failures.load();
  };
  ASSERT_EQ(swap_from_threads(25), 0);  // warm-up: 200 swaps
  auto client = Client(server);
  ASSERT_TRUE(client->PseudoLabel(Request(Scene(50), 96, false)).ok());
  const int64_t before = ResidentBytes(server.pid());
  ASSERT_EQ(swap_from_threads(125), 0);  // 1,000 swaps
  ASSERT_TRUE(client->PseudoLabel(Request(Scene(50), 96, false)).ok());
  const int64_t after = ResidentBytes(server.pid());
  std::printf(
      "resident memory: %.1f MB after warm-up, %.1f MB after 1000 swaps\n",
      before / 1e6, after / 1e6);
  RecordProperty("rss_before_mb", std::to_string(before / 1e6));
  RecordProperty("rss_after_mb", std::to_string(after / 1e6));
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine inflates RSS
  EXPECT_LT(after - before, 50 << 20);
#endif
  EXPECT_EQ(client->GetModelStatus()->model().head_version(), 1200u);
}

}  // namespace
}  // namespace primaps

namespace primaps {
namespace {

double ActiveCalls(int metrics_port) {
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  const size_t at = metrics.find("\nprimaps_active_calls ");
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + 22));
}

// A client killed mid-request and calls that run out of deadline: the
// server frees their state (active calls back to 0) and stays live.
TEST_F(ServerTest, AbandonedCallsReleaseTheirState) {
  const std::string big = Scene(60, 1600, 1200);
  const std::string image_path = dir_.Write("big.png", big);
  for (int i = 0; i < 3; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl(PRIMAPS_CLIENT_BIN, PRIMAPS_CLIENT_BIN, "propose",
              ("--server=" + server_->address()).c_str(),
              ("--image=" + image_path).c_str(), "--out=/dev/null",
              "--resize=800", nullptr);
      ::_exit(127);
    }
    ASSERT_GT(pid, 0) << "fork failed";  // kill(-1) would signal everything
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  ClientOptions options;
  options.target = server_->address();
  options.retries = 0;
  options.deadline = absl::Milliseconds(100);
  auto hurried = *PrimapsClient::Create(options);
  // An 800x800 crop is a large request (10000 patch tokens): while an
  // abandoned one still winds down it holds the one large slot, and the
  // next is refused at once instead of timing out; either way no call
  // lingers.
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(hurried->ProposeMasks(Request(big, 800, true)).status().code(),
                ::testing::AnyOf(absl::StatusCode::kDeadlineExceeded,
                                 absl::StatusCode::kResourceExhausted));
  }
  // All per-call state is released once the abandoned work reaches a stage
  // boundary.
  double active = -1;
  for (int i = 0; i < 200 && active != 0; ++i) {
    active = ActiveCalls(server_->metrics_port());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(active, 0);
  auto client = Client(*server_);
  EXPECT_EQ(*client->Health(), "SERVING");
  EXPECT_TRUE(client->ProposeMasks(Request(Scene(61), 64, false)).ok());
}

}  // namespace
}  // namespace primaps
