// Clients that hang up, cancel, stop reading or send bad images at the worst
// moments, against the real primaps-server binary over real gRPC and HTTP
// connections. After each, the server must still be SERVING, its active
// calls back to 0, and a good unary call and a good stream must work.
// The same suite runs under ASan + UBSan (scripts/run_sanitizers.sh).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "primaps/v1/admin.grpc.pb.h"
#include "server/model_repository.h"
#include "tests/integration/server_process.h"
#include "tests/integration/slow_proxy.h"
#include "tests/unit/test_heads.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::ConnectLoopback;
using ::primaps::testing::MetricValue;
using ::primaps::testing::ResidentBytes;
using ::primaps::testing::ServerProcess;
using ::primaps::testing::SlowProxy;
using ::primaps::testing::TempDir;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

const char kToken[] = "misbehaving-clients-token";

std::string Scene(int seed, int w, int h, const char* ext = ".png") {
  return primaps::testing::RegionsScene(seed, w, h, ext);
}

// Fast to serve: small, no CRF.
v1::ImageRequest SmallRequest(int seed, const std::string& id = "") {
  static const std::string image = Scene(1, 160, 120);
  v1::ImageRequest r;
  r.set_request_id(id.empty() ? absl::StrCat("small-", seed) : id);
  r.mutable_image()->set_encoded(image);
  r.mutable_preprocess()->set_resize(96);
  r.mutable_preprocess()->set_crf(false);
  return r;
}

// Slow to serve (hundreds of ms): PriMaPs and the CRF on a 480 crop.
v1::ImageRequest SlowRequest(const std::string& id) {
  static const std::string image = Scene(2, 900, 700, ".jpg");
  v1::ImageRequest r;
  r.set_request_id(id);
  r.mutable_image()->set_encoded(image);
  r.mutable_preprocess()->set_resize(480);
  r.mutable_preprocess()->set_crf(true);
  return r;
}

v1::ImageRequest BadRequest(const std::string& id) {
  v1::ImageRequest r;
  r.set_request_id(id);
  r.mutable_image()->set_encoded("this is not an image");
  return r;
}

v1::FeatureRequest AsFeatures(const v1::ImageRequest& image) {
  v1::FeatureRequest r;
  r.set_request_id(image.request_id());
  *r.mutable_image() = image.image();
  *r.mutable_preprocess() = image.preprocess();
  r.set_masks(true);  // PriMaPs runs for features too
  return r;
}

class MisbehavingClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ = dir_.Write("token", std::string(kToken) + "\n");
    // A batching delay so that images wait in the batcher for a while.
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--admin_token_file=" + token_file_, "--cpu_threads=2",
        "--max_queue_delay_ms=40", "--max_batch=4"});
    ASSERT_TRUE(server_->started()) << server_->Log();
    ClientOptions options;
    options.target = server_->address();
    options.admin_token = kToken;
    options.retries = 0;
    options.deadline = absl::Seconds(120);
    client_ = *PrimapsClient::Create(options);
  }

  double ActiveCalls() const {
    return MetricValue(server_->metrics_port(), "primaps_active_calls");
  }

  // The state after any misbehaviour: serving, nothing left behind, and
  // both kinds of call work.
  void ExpectRecovered(const std::string& after) {
    SCOPED_TRACE(after);
    double active = -1;
    const auto start = Clock::now();
    while (Clock::now() - start < std::chrono::seconds(60)) {
      active = ActiveCalls();
      if (active == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(active, 0) << "calls still active after: " << after;
    auto health = client_->Health();
    ASSERT_TRUE(health.ok()) << health.status() << "\n" << server_->Log();
    EXPECT_EQ(*health, "SERVING");
    EXPECT_TRUE(client_->PseudoLabel(SmallRequest(0)).ok());
    grpc::ClientContext context;
    auto stream = client_->stub()->StreamPseudoLabels(&context);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(stream->Write(SmallRequest(i)));
    stream->WritesDone();
    v1::PseudoLabelStreamResponse response;
    int answers = 0;
    while (stream->Read(&response)) {
      EXPECT_FALSE(response.has_error()) << response.error().message();
      ++answers;
    }
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(answers, 2);
  }

  TempDir dir_;
  std::string token_file_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<PrimapsClient> client_;
};

// When a client gives up on its stream.
enum class CancelAt { kAtOnce, kAfterFirst, kAfterThree, kWhileProcessing };

const char* Name(CancelAt at) {
  switch (at) {
    case CancelAt::kAtOnce:
      return "before the first response";
    case CancelAt::kAfterFirst:
      return "after 1 response";
    case CancelAt::kAfterThree:
      return "after 3 responses";
    case CancelAt::kWhileProcessing:
      return "150 ms in (images in the batcher and in PriMaPs)";
  }
  return "?";
}

// Writes 8 slow images on `stream`, reads as `at` says, then cancels.
// Returns the call's status.
template <typename Response, typename Stream, typename Request>
grpc::Status WriteThenCancel(grpc::ClientContext* context, Stream* stream,
                             const std::vector<Request>& requests,
                             CancelAt at) {
  for (const Request& r : requests) {
    if (!stream->Write(r)) break;
  }
  Response response;
  const int reads = at == CancelAt::kAfterFirst   ? 1
                    : at == CancelAt::kAfterThree ? 3
                                                  : 0;
  for (int i = 0; i < reads; ++i) {
    if (!stream->Read(&response)) break;
  }
  if (at == CancelAt::kWhileProcessing)
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  context->TryCancel();
  return stream->Finish();
}

std::vector<v1::ImageRequest> SlowImages(int n) {
  std::vector<v1::ImageRequest> out;
  for (int i = 0; i < n; ++i) out.push_back(SlowRequest(absl::StrCat("s", i)));
  return out;
}

TEST_F(MisbehavingClientsTest, StreamsCancelledAtEveryPoint) {
  const std::vector<v1::ImageRequest> images = SlowImages(8);
  std::vector<v1::FeatureRequest> features;
  for (const auto& r : images) features.push_back(AsFeatures(r));
  for (CancelAt at : {CancelAt::kAtOnce, CancelAt::kAfterFirst,
                      CancelAt::kAfterThree, CancelAt::kWhileProcessing}) {
    for (int round = 0; round < 2; ++round) {
      {
        grpc::ClientContext context;
        auto stream = client_->stub()->StreamPseudoLabels(&context);
        const grpc::Status status =
            WriteThenCancel<v1::PseudoLabelStreamResponse>(
                &context, stream.get(), images, at);
        EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
      }
      {
        grpc::ClientContext context;
        auto stream = client_->stub()->ExtractFeatures(&context);
        const grpc::Status status = WriteThenCancel<v1::FeatureResponse>(
            &context, stream.get(), features, at);
        EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
      }
    }
    ExpectRecovered(absl::StrCat("streams cancelled ", Name(at)));
  }
}

TEST_F(MisbehavingClientsTest, SixtyFourStreamsCancelledAtOnce) {
  constexpr int kStreams = 64;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<
      v1::ImageRequest, v1::PseudoLabelStreamResponse>>>
      streams;
  for (int s = 0; s < kStreams; ++s) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(
        client_->stub()->StreamPseudoLabels(contexts.back().get()));
    for (int i = 0; i < 8; ++i) {
      // A quarter of them slow: the CPU pool is busy when the cancels come.
      const auto r = (s % 4 == 0) ? SlowRequest(absl::StrCat(s, "-", i))
                                  : SmallRequest(i, absl::StrCat(s, "-", i));
      if (!streams.back()->Write(r)) break;
    }
  }
  for (auto& context : contexts) context->TryCancel();
  for (auto& stream : streams) {
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ExpectRecovered("64 streams cancelled at once");
}

TEST_F(MisbehavingClientsTest, DroppedConnectionMidStream) {
  auto proxy = std::make_unique<SlowProxy>(
      std::stoi(server_->address().substr(server_->address().rfind(':') + 1)),
      std::chrono::milliseconds(0));
  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", proxy->port());
  options.retries = 0;
  auto via_proxy = *PrimapsClient::Create(options);
  grpc::ClientContext context;
  auto stream = via_proxy->stub()->StreamPseudoLabels(&context);
  for (const auto& r : SlowImages(8)) ASSERT_TRUE(stream->Write(r));
  v1::PseudoLabelStreamResponse response;
  ASSERT_TRUE(stream->Read(&response));
  proxy.reset();  // the TCP connection is gone, images still in flight
  while (stream->Read(&response)) {
  }
  EXPECT_FALSE(stream->Finish().ok());
  ExpectRecovered("a connection dropped mid-stream");
}

TEST_F(MisbehavingClientsTest, BadImageFirstMiddleOrLast) {
  for (int bad : {0, 4, 7}) {
    SCOPED_TRACE(absl::StrCat("bad image at ", bad));
    // StreamPseudoLabels answers the bad image with its error and goes on.
    {
      grpc::ClientContext context;
      auto stream = client_->stub()->StreamPseudoLabels(&context);
      for (int i = 0; i < 8; ++i) {
        const std::string id = absl::StrCat("img", i);
        ASSERT_TRUE(stream->Write(
            i == bad ? BadRequest(id)
                     : (i % 2 ? SlowRequest(id) : SmallRequest(i, id))));
      }
      stream->WritesDone();
      v1::PseudoLabelStreamResponse response;
      int labels = 0, errors = 0;
      while (stream->Read(&response)) {
        if (response.has_error()) {
          ++errors;
          EXPECT_EQ(response.request_id(), absl::StrCat("img", bad));
          EXPECT_EQ(response.error().code(),
                    grpc::StatusCode::INVALID_ARGUMENT);
        } else {
          ++labels;
        }
      }
      EXPECT_TRUE(stream->Finish().ok());
      EXPECT_EQ(labels, 7);
      EXPECT_EQ(errors, 1);
    }
    // ExtractFeatures ends at the bad image, naming it, while the others
    // are still in flight.
    {
      grpc::ClientContext context;
      auto stream = client_->stub()->ExtractFeatures(&context);
      for (int i = 0; i < 8; ++i) {
        const std::string id = absl::StrCat("f", i);
        if (!stream->Write(
                AsFeatures(i == bad ? BadRequest(id) : SlowRequest(id))))
          break;
      }
      stream->WritesDone();
      v1::FeatureResponse response;
      int answers = 0;
      while (stream->Read(&response)) ++answers;
      const grpc::Status status = stream->Finish();
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_THAT(status.error_message(),
                  HasSubstr(absl::StrCat("request \"f", bad, "\"")));
      EXPECT_LE(answers, bad);  // in order: nothing after the bad one
    }
    ExpectRecovered(absl::StrCat("a stream with a bad image at ", bad));
  }
}

TEST_F(MisbehavingClientsTest, HalfClosedAndNeverRead) {
  for (int round = 0; round < 3; ++round) {
    grpc::ClientContext context;
    auto stream = client_->stub()->StreamPseudoLabels(&context);
    for (const auto& r : SlowImages(8)) ASSERT_TRUE(stream->Write(r));
    stream->WritesDone();
    // The client goes away without reading a single answer.
    std::this_thread::sleep_for(std::chrono::milliseconds(300 * round));
    context.TryCancel();
    EXPECT_THAT(stream->Finish().error_code(),
                AnyOf(grpc::StatusCode::CANCELLED, grpc::StatusCode::OK));
  }
  ExpectRecovered("streams half-closed and never read");
}

// A client that keeps writing and never reads: the server reads at most
// StreamReactor::kMaxInFlight (8) images ahead, so it holds at most 8
// requests, their 8 answers and the one being written; flow control
// stalls the client's writes.
TEST_F(MisbehavingClientsTest, StoppedReadingHoldsBoundedMemory) {
  constexpr int kMessages = 400;
  // 900x700 JPEGs (about 0.3 MB each: 400 are far more than the transport
  // buffers hold), features of a 320 crop with the masks.
  v1::FeatureRequest request = AsFeatures(SlowRequest("unread"));
  request.mutable_preprocess()->set_resize(320);
  request.mutable_preprocess()->set_crf(false);
  ASSERT_TRUE(client_->ExtractFeatures(request).ok());  // warm-up
  const double served_before =
      primaps::testing::RequestsServed(server_->metrics_port());
  const int64_t rss_before = ResidentBytes(server_->pid());
  grpc::ClientContext context;
  auto stream = client_->stub()->ExtractFeatures(&context);
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < kMessages; ++i) {
      if (!stream->Write(request)) return;
      ++written;
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const double served =
      primaps::testing::RequestsServed(server_->metrics_port()) - served_before;
  const int64_t rss_stalled = ResidentBytes(server_->pid());
  EXPECT_LT(written.load(), kMessages);
  // 8 in flight plus those that fit the transport's buffers (a few MB).
  EXPECT_LT(served, 40) << "the server kept working for a client that "
                           "does not read";
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine inflates RSS
  EXPECT_LT(rss_stalled - rss_before, int64_t{80} << 20);
#endif
  std::printf("stopped reading: %d written, %.0f answered, RSS %+.1f MB\n",
              written.load(), served, (rss_stalled - rss_before) / 1e6);
  context.TryCancel();
  writer.join();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectRecovered("a client that stopped reading");
}

TEST_F(MisbehavingClientsTest,
       UnaryCallsCancelledWhileQueuedInTheBackboneOrCrf) {
  // 0 ms: queued for decoding; 20 ms: waiting in the batcher (40 ms delay);
  // 150 ms and 400 ms: in PriMaPs and the CRF of a 480 crop.
  for (int delay_ms : {0, 20, 150, 400}) {
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    const std::vector<v1::ImageRequest> requests(6, SlowRequest("u"));
    std::vector<v1::PseudoLabelResponse> responses(6);
    std::atomic<int> cancelled{0}, done{0};
    for (int i = 0; i < 6; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      client_->stub()->async()->PseudoLabel(
          contexts.back().get(), &requests[i], &responses[i],
          [&](grpc::Status status) {
            cancelled += status.error_code() == grpc::StatusCode::CANCELLED;
            ++done;
          });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    for (auto& context : contexts) context->TryCancel();
    while (done.load() < 6)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_GT(cancelled.load(), 0) << delay_ms << " ms";
    ExpectRecovered(
        absl::StrCat("unary calls cancelled after ", delay_ms, " ms"));
  }
}

TEST_F(MisbehavingClientsTest, StreamMinHeadVersionIsHonoured) {
  grpc::ClientContext context;
  auto stream = client_->stub()->StreamPseudoLabels(&context);
  v1::ImageRequest needs_head = SmallRequest(1, "needs-v5");
  needs_head.set_min_head_version(5);
  ASSERT_TRUE(stream->Write(needs_head));
  ASSERT_TRUE(stream->Write(SmallRequest(2, "any")));
  stream->WritesDone();
  v1::PseudoLabelStreamResponse response;
  int errors = 0, labels = 0;
  while (stream->Read(&response)) {
    if (response.has_error()) {
      ++errors;
      EXPECT_EQ(response.request_id(), "needs-v5");
      EXPECT_EQ(response.error().code(), grpc::StatusCode::FAILED_PRECONDITION);
    } else {
      ++labels;
      EXPECT_EQ(response.request_id(), "any");
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(labels, 1);
}

TEST_F(MisbehavingClientsTest, StreamsAcrossAHotSwapNameTheirHead) {
  v1::LoadCheckpointRequest load;
  load.set_data(primaps::testing::RandomBuiltinHeadBytes(5, 1.f, 7));
  auto first = client_->LoadCheckpoint(load);
  ASSERT_TRUE(first.ok()) << first.status();
  const uint64_t old_version = first->model().head_version();
  grpc::ClientContext context;
  auto stream = client_->stub()->StreamPseudoLabels(&context);
  v1::PseudoLabelStreamResponse response;
  // One image at a time, so each answer is from a known side of the swap.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(stream->Write(SmallRequest(i)));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.pseudo_label().model().head_version(), old_version);
  }
  // Images in flight while the swap happens.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(stream->Write(SlowRequest("mid")));
  load.set_data(primaps::testing::RandomBuiltinHeadBytes(6, 1.f, 8));
  auto second = client_->LoadCheckpoint(load);
  ASSERT_TRUE(second.ok()) << second.status();
  const uint64_t new_version = second->model().head_version();
  EXPECT_GT(new_version, old_version);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_THAT(response.pseudo_label().model().head_version(),
                AnyOf(old_version, new_version));
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(stream->Write(SmallRequest(10 + i)));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.pseudo_label().model().head_version(), new_version);
  }
  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_TRUE(stream->Finish().ok());
  ExpectRecovered("a stream across two hot swaps");
}

// A server following a model repository: a version published while a
// stream is open reaches the stream's next images.
TEST(MisbehavingClientsRepositoryTest, StreamsAcrossARepositoryUpdate) {
  TempDir dir;
  const std::string repository = dir.path() + "/repository";
  ASSERT_TRUE(
      PublishToDirectory(
          repository, primaps::testing::RandomBuiltinHeadBytes(5, 1.f, 3), "")
          .ok());
  ServerProcess server({"--model_repository=" + repository,
                        "--poll_interval_s=1", "--cpu_threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  ClientOptions options;
  options.target = server.address();
  options.retries = 0;
  auto client = *PrimapsClient::Create(options);
  grpc::ClientContext context;
  auto stream = client->stub()->StreamPseudoLabels(&context);
  v1::PseudoLabelStreamResponse response;
  ASSERT_TRUE(stream->Write(SmallRequest(0)));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.pseudo_label().model().head_version(), 1u);
  ASSERT_TRUE(
      PublishToDirectory(
          repository, primaps::testing::RandomBuiltinHeadBytes(6, 1.f, 4), "")
          .ok());
  // Images keep flowing on the same stream while the server picks it up.
  uint64_t version = 1;
  const auto start = Clock::now();
  for (int i = 1;
       version == 1 && Clock::now() - start < std::chrono::seconds(30); ++i) {
    ASSERT_TRUE(stream->Write(SmallRequest(i)));
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_FALSE(response.has_error()) << response.error().message();
    const uint64_t now = response.pseudo_label().model().head_version();
    EXPECT_GE(now, version);  // never back to the old one
    version = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(version, 2u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  double active = -1;
  for (int i = 0; i < 500 && active != 0; ++i) {
    active = MetricValue(server.metrics_port(), "primaps_active_calls");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(active, 0);
}

TEST_F(MisbehavingClientsTest, DrainFinishesOpenStreamsWithUnavailable) {
  grpc::ClientContext idle_context, busy_context;
  // One stream idle (open, nothing sent), one with slow images in flight.
  auto idle = client_->stub()->StreamPseudoLabels(&idle_context);
  ASSERT_TRUE(idle->Write(SmallRequest(0)));
  v1::PseudoLabelStreamResponse response;
  ASSERT_TRUE(idle->Read(&response));
  auto busy = client_->stub()->StreamPseudoLabels(&busy_context);
  for (const auto& r : SlowImages(4)) ASSERT_TRUE(busy->Write(r));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // The clients read on while the server drains, as real ones do.
  int answered = 0;
  grpc::Status busy_status, idle_status;
  std::thread busy_reader([&] {
    v1::PseudoLabelStreamResponse r;
    while (busy->Read(&r)) answered += !r.has_error();
    busy_status = busy->Finish();
  });
  std::thread idle_reader([&] {
    v1::PseudoLabelStreamResponse r;
    while (idle->Read(&r)) {
    }
    idle_status = idle->Finish();
  });
  const auto start = Clock::now();
  EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Log();
  const double drain_s =
      std::chrono::duration<double>(Clock::now() - start).count();
  busy_reader.join();
  idle_reader.join();
  EXPECT_EQ(busy_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << busy_status.error_message();
  EXPECT_THAT(busy_status.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(idle_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << idle_status.error_message();
  // What the server had read before the drain is answered.
  EXPECT_EQ(answered, 4);
  EXPECT_THAT(server_->Log(), HasSubstr("drained; 0 calls still active"));
  std::printf("drain with 2 open streams: %.2f s, %d images answered\n",
              drain_s, answered);
}

// The HTTP API's clients that hang up mid-upload and before the answer.
TEST_F(MisbehavingClientsTest, HttpClientsThatDisconnect) {
  const std::string image = Scene(3, 900, 700);
  for (int round = 0; round < 4; ++round) {
    // Mid-upload: the body is cut off after a tenth.
    const int fd = ConnectLoopback(server_->http_port());
    ASSERT_GE(fd, 0);
    const std::string head = absl::StrCat(
        "POST /v1/pseudo_label?resize=480&crf=true HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: image/png\r\nContent-Length: ",
        image.size(), "\r\n\r\n");
    ASSERT_GT(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), 0);
    ASSERT_GT(::send(fd, image.data(), image.size() / 10, MSG_NOSIGNAL), 0);
    ::close(fd);
    // Mid-response: the whole request, then gone before the answer.
    const int fd2 = ConnectLoopback(server_->http_port());
    ASSERT_GE(fd2, 0);
    ASSERT_GT(::send(fd2, head.data(), head.size(), MSG_NOSIGNAL), 0);
    size_t sent = 0;
    while (sent < image.size()) {
      const ssize_t n =
          ::send(fd2, image.data() + sent, image.size() - sent, MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      sent += n;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * round));
    ::close(fd2);
  }
  ExpectRecovered("HTTP clients that disconnected");
}

// Mixed unary and stream calls from 8 clients with random cancels and
// deadlines, and two hot swaps; a fixed seed and a bounded time.
TEST_F(MisbehavingClientsTest, RandomizedSoak) {
  const auto duration = std::chrono::seconds(30);
  std::atomic<int> streams_cancelled{0}, streams_completed{0},
      unary_cancelled{0}, unary_ok{0}, unary_deadline{0};
  std::vector<std::thread> clients;
  auto end = Clock::now();
  auto start_clients = [&](uint32_t seed, Clock::duration how_long) {
    clients.clear();
    end = Clock::now() + how_long;
    for (int c = 0; c < 8; ++c) {
      clients.emplace_back([&, c, seed] {
        std::mt19937 rng(seed + c);
        while (Clock::now() < end) {
          const bool slow = rng() % 3 == 0;
          if (rng() % 2 == 0) {
            grpc::ClientContext context;
            if (rng() % 4 == 0) {
              context.set_deadline(std::chrono::system_clock::now() +
                                   std::chrono::milliseconds(rng() % 300));
            }
            auto stream = client_->stub()->StreamPseudoLabels(&context);
            const int n = 1 + rng() % 8;
            for (int i = 0; i < n; ++i) {
              if (!stream->Write(slow ? SlowRequest("soak") : SmallRequest(i)))
                break;
            }
            const bool cancel = rng() % 2 == 0;
            if (!cancel) stream->WritesDone();
            v1::PseudoLabelStreamResponse response;
            const int reads = cancel ? static_cast<int>(rng() % (n + 1)) : n;
            for (int i = 0; i < reads && stream->Read(&response); ++i) {
            }
            if (cancel) {
              context.TryCancel();
              ++streams_cancelled;
            }
            while (stream->Read(&response)) {
            }
            if (stream->Finish().ok()) ++streams_completed;
          } else {
            grpc::ClientContext context;
            const int mode = rng() % 3;  // 0: normal, 1: deadline, 2: cancel
            if (mode == 1) {
              context.set_deadline(std::chrono::system_clock::now() +
                                   std::chrono::milliseconds(rng() % 200));
            }
            v1::PseudoLabelResponse response;
            std::atomic<bool> done{false};
            grpc::Status status;
            const v1::ImageRequest request =
                slow ? SlowRequest("soak") : SmallRequest(c);
            client_->stub()->async()->PseudoLabel(&context, &request, &response,
                                                  [&](grpc::Status s) {
                                                    status = std::move(s);
                                                    done = true;
                                                  });
            if (mode == 2) {
              std::this_thread::sleep_for(
                  std::chrono::milliseconds(rng() % 200));
              context.TryCancel();
            }
            while (!done)
              std::this_thread::sleep_for(std::chrono::milliseconds(2));
            if (status.ok()) ++unary_ok;
            if (status.error_code() == grpc::StatusCode::CANCELLED)
              ++unary_cancelled;
            if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
              ++unary_deadline;
          }
        }
      });
    }
  };
  // Two warm-up rounds with the same mix: the allocator's arenas and the
  // pools reach the working size of 8 concurrent clients. "Before" is the
  // larger of the two rounds' values at rest.
  auto heap_in_use = [&] {
    return static_cast<int64_t>(MetricValue(
        server_->metrics_port(), "primaps_process_heap_in_use_bytes"));
  };
  int64_t rss_before = 0, heap_before = 0;
  for (int round = 0; round < 2; ++round) {
    start_clients(99 + round, std::chrono::seconds(10));
    for (auto& t : clients) t.join();
    ExpectRecovered("a warm-up round of the soak");
    rss_before = std::max(rss_before, ResidentBytes(server_->pid()));
    heap_before = std::max(heap_before, heap_in_use());
  }
  streams_cancelled = streams_completed = unary_cancelled = unary_ok =
      unary_deadline = 0;
  start_clients(1234, duration);
  // Two hot swaps in the middle of it.
  for (int swap = 0; swap < 2; ++swap) {
    std::this_thread::sleep_for(duration / 3);
    v1::LoadCheckpointRequest load;
    load.set_data(
        primaps::testing::RandomBuiltinHeadBytes(5 + swap, 1.f, swap));
    EXPECT_TRUE(client_->LoadCheckpoint(load).ok());
  }
  for (auto& t : clients) t.join();
  ExpectRecovered("the soak");
  const int64_t rss_after = ResidentBytes(server_->pid());
  const int64_t heap_after = heap_in_use();
  std::printf(
      "soak: %d streams cancelled, %d streams completed; unary: %d ok, %d "
      "cancelled, %d past their deadline; RSS %.1f MB before, %.1f MB "
      "after; heap in use %.1f MB before, %.1f MB after\n",
      streams_cancelled.load(), streams_completed.load(), unary_ok.load(),
      unary_cancelled.load(), unary_deadline.load(), rss_before / 1e6,
      rss_after / 1e6, heap_before / 1e6, heap_after / 1e6);
  RecordProperty("streams_cancelled", streams_cancelled.load());
  RecordProperty("rss_before_mb", std::to_string(rss_before / 1e6));
  RecordProperty("rss_after_mb", std::to_string(rss_after / 1e6));
  // Proof that the soak did what it says (low bounds: under ASan it runs
  // about ten times slower).
  EXPECT_GT(streams_cancelled.load(), 3);
  EXPECT_GT(streams_completed.load(), 3);
  EXPECT_GT(unary_ok.load(), 3);
#if !defined(__SANITIZE_ADDRESS__)  // ASan's allocator and quarantine
  // A leak grows the heap in use: within 10% (measured: +2-3%). The
  // resident size also holds the freed pages glibc keeps in its arenas for
  // reuse, which depend on which threads last allocated (measured on three
  // runs: +2%, +14%, +23%); it is bounded only against unbounded growth.
  EXPECT_LT(heap_after, heap_before * 11 / 10)
      << heap_before / 1e6 << " MB -> " << heap_after / 1e6 << " MB";
  EXPECT_LT(rss_after, rss_before * 3 / 2)
      << rss_before / 1e6 << " MB -> " << rss_after / 1e6 << " MB";
#endif
}

}  // namespace
}  // namespace primaps
