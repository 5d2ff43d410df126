// The HTTP/JSON API (server/http_api.h) against the real primaps-server:
// every endpoint, every error mapping, oversize bodies, slow and idle
// connections, the metrics and the web page's files.
#include "server/http_api.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/server_process.h"
#include "tests/unit/test_heads.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::ServerProcess;
using ::primaps::testing::TempDir;
using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string Photo() {
  return primaps::testing::ReadBinary(
      primaps::testing::DemoImagePath("coco_example.jpg"));
}

cv::Mat DecodePng(const std::string& png) {
  return cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8U,
                              const_cast<char*>(png.data())),
                      cv::IMREAD_UNCHANGED);
}

cv::Mat DecodeBase64Png(const std::string& base64) {
  std::string png;
  EXPECT_TRUE(absl::Base64Unescape(base64, &png));
  return DecodePng(png);
}

httplib::Result Post(httplib::Client& http, const std::string& path,
                     const std::string& body,
                     const std::string& type = "image/jpeg") {
  return http.Post(path.c_str(), body, type.c_str());
}

// The error body's code, checking that it is the JSON error shape.
std::string ErrorCode(const httplib::Result& result) {
  const Json body = Json::parse(result->body, nullptr, false);
  if (!body.contains("error")) return "(no error object: " + result->body + ")";
  return body["error"]["code"].get<std::string>();
}

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    head_ = dir_.Write("head.safetensors",
                       primaps::testing::RandomBuiltinHeadBytes(5, 4.f, 11));
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--head=" + head_, "--cpu_threads=2", "--max_message_bytes=4000000"});
    ASSERT_TRUE(server_->started()) << server_->Log();
    ASSERT_GT(server_->http_port(), 0);
  }

  httplib::Client Client() const {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(120, 0);
    return client;
  }

  TempDir dir_;
  std::string head_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(HttpApiTest, ProposeAnswersJsonWithAPngMaskMapAndTheModel) {
  auto http = Client();
  auto result =
      Post(http, "/v1/propose?output_size=original&request_id=p1", Photo());
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  const Json body = Json::parse(result->body);
  EXPECT_EQ(body["request_id"], "p1");
  EXPECT_EQ(body["model"]["backbone"], "builtin");
  EXPECT_EQ(body["model"]["head_version"], "1");
  EXPECT_EQ(body["model"]["source"], "--head " + head_);
  const int masks = body["mask_count"];
  EXPECT_GT(masks, 0);
  ASSERT_EQ(body["mask_area"].size(), masks + 1u);
  const cv::Mat map = DecodeBase64Png(body["masks"]["png"]);
  const cv::Mat photo = cv::imread(
      primaps::testing::DemoImagePath("coco_example.jpg"), cv::IMREAD_COLOR);
  EXPECT_EQ(map.cols, photo.cols);
  EXPECT_EQ(map.rows, photo.rows);
  EXPECT_EQ(body["geometry"]["output_width"], photo.cols);
  double max_label = 0;
  cv::minMaxLoc(map, nullptr, &max_label);
  EXPECT_EQ(max_label, masks);
  EXPECT_FALSE(result->get_header_value("X-PriMaPs-Time-Ms").empty());
}

TEST_F(HttpApiTest, PseudoLabelAsPngWithTheModelInHeaders) {
  auto http = Client();
  auto result = Post(http, "/v1/pseudo_label?format=png&resize=160", Photo());
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(result->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(result->get_header_value("X-PriMaPs-Head-Version"), "1");
  EXPECT_EQ(result->get_header_value("X-PriMaPs-Classes"), "5");
  const cv::Mat labels = DecodePng(result->body);
  ASSERT_FALSE(labels.empty());
  EXPECT_EQ(labels.cols, 160);  // the center crop at resize 160
  EXPECT_EQ(labels.rows, 160);
  double max_label = 0;
  cv::minMaxLoc(labels, nullptr, &max_label);
  EXPECT_TRUE(max_label < 5 || max_label == 255);
}

TEST_F(HttpApiTest, SegmentTakesAMultipartUploadAndQueryParameters) {
  auto http = Client();
  httplib::MultipartFormDataItems items = {
      {"note", "not the image", "", "text/plain"},
      {"image", Photo(), "photo.jpg", "image/jpeg"}};
  auto result =
      http.Post("/v1/segment?crf=false&resize=96&probabilities=true", items);
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  const Json body = Json::parse(result->body);
  EXPECT_EQ(body["classes"], 5);
  const cv::Mat labels = DecodeBase64Png(body["labels"]["png"]);
  EXPECT_EQ(labels.cols, 96);
  EXPECT_EQ(body["probabilities"].size(), 5u * 96 * 96);
  EXPECT_EQ(body["geometry"]["crf_resolution"], "CRF_RESOLUTION_UNSPECIFIED");
}

TEST_F(HttpApiTest, ModelHealthAndReadiness) {
  auto http = Client();
  auto model = http.Get("/v1/model");
  ASSERT_TRUE(model);
  EXPECT_EQ(model->status, 200);
  const Json info = Json::parse(model->body);
  EXPECT_EQ(info["classes"], 5);
  EXPECT_EQ(info["precision"], "fp32");
  EXPECT_EQ(http.Get("/healthz")->status, 200);
  EXPECT_EQ(http.Get("/readyz")->status, 200);
}

TEST_F(HttpApiTest, ErrorsMapToHttpStatusesWithTheServersMessage) {
  auto http = Client();
  // A corrupt image: 400 INVALID_ARGUMENT, saying what was wrong.
  auto bad = Post(http, "/v1/pseudo_label", "not an image at all");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(ErrorCode(bad), "INVALID_ARGUMENT");
  EXPECT_THAT(bad->body, HasSubstr("unsupported image format"));
  // A truncated JPEG.
  const std::string photo = Photo();
  auto truncated = Post(http, "/v1/propose", photo.substr(0, photo.size() / 3));
  EXPECT_EQ(truncated->status, 400) << truncated->body;
  // Bad parameters.
  for (const char* query :
       {"?crop=sideways", "?threshold=abc", "?resize=-3", "?unknown=1",
        "?format=gif", "?timeout_ms=0", "?resize=5000"}) {
    auto result = Post(http, std::string("/v1/propose") + query, photo);
    EXPECT_EQ(result->status, 400) << query << ": " << result->body;
    EXPECT_EQ(ErrorCode(result), "INVALID_ARGUMENT") << query;
  }
  // No image.
  auto empty = Post(http, "/v1/propose", "");
  EXPECT_EQ(empty->status, 400);
  EXPECT_THAT(empty->body, HasSubstr("no image"));
  // A head older than the caller accepts: 412 FAILED_PRECONDITION.
  auto old_head = Post(http, "/v1/pseudo_label?min_head_version=9", photo);
  EXPECT_EQ(old_head->status, 412);
  EXPECT_EQ(ErrorCode(old_head), "FAILED_PRECONDITION");
  EXPECT_THAT(old_head->body, HasSubstr("version 9"));
  // Past the caller's deadline: 504.
  auto late =
      Post(http, "/v1/propose?timeout_ms=1&resize=640&crop=full", photo);
  EXPECT_EQ(late->status, 504) << late->body;
  // Unknown paths and methods: 404 with the JSON error shape.
  auto missing = http.Get("/v2/nothing");
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(ErrorCode(missing), "NOT_FOUND");
  // The server kept serving.
  EXPECT_EQ(Post(http, "/v1/propose?resize=64", photo)->status, 200);
}

TEST(HttpApiErrors, SegmentWithoutAHeadIs412AndUnreadyIs503) {
  TempDir repository;  // pinned to a version that is not there: not ready
  ServerProcess server({"--model_repository=" + repository.path(),
                        "--version_policy=pinned:3", "--poll_interval_s=60"});
  ASSERT_TRUE(server.started()) << server.Log();
  httplib::Client http("127.0.0.1", server.http_port());
  auto segment = Post(http, "/v1/segment", Photo());
  ASSERT_TRUE(segment);
  EXPECT_EQ(segment->status, 412);
  EXPECT_EQ(ErrorCode(segment), "FAILED_PRECONDITION");
  EXPECT_THAT(segment->body, HasSubstr("needs a head"));
  EXPECT_EQ(http.Get("/readyz")->status, 503);
  EXPECT_EQ(http.Get("/healthz")->status, 200);
}

TEST(HttpApiErrors, OverloadIs429WithRetryAfter) {
  ServerProcess server({"--max_queue=1", "--cpu_threads=1"});
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string photo = Photo();
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::atomic<bool> retry_after{true};
  std::vector<std::thread> callers;
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&] {
      httplib::Client http("127.0.0.1", server.http_port());
      http.set_read_timeout(120, 0);
      auto result = Post(http, "/v1/pseudo_label?output_size=original", photo);
      if (!result) {
        ++other;
      } else if (result->status == 200) {
        ++ok;
      } else if (result->status == 429) {
        ++refused;
        if (ErrorCode(result) != "RESOURCE_EXHAUSTED" ||
            result->get_header_value("Retry-After") != "1")
          retry_after = false;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_GE(ok, 1);
  EXPECT_GE(refused, 1);
  EXPECT_EQ(other, 0);
  EXPECT_TRUE(retry_after);
}

TEST_F(HttpApiTest, OversizeBodiesAreRefusedBeforeTheyAreRead) {
  // The server closes connections whose bodies it refuses; writing on
  // should fail with EPIPE, not kill the test.
  std::signal(SIGPIPE, SIG_IGN);
  // The header claims 1 GB and the client sends 10 bytes: refused from the
  // header, without waiting for (or reading) the body.
  const int fd = primaps::testing::ConnectLoopback(server_->http_port());
  ASSERT_GE(fd, 0);
  const std::string request =
      "POST /v1/propose HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
      "Content-Length: 1000000000\r\n\r\n0123456789";
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  // The server answers and closes the connection.
  std::string answer;
  char buffer[4096];
  for (ssize_t got; (got = ::recv(fd, buffer, sizeof(buffer), 0)) > 0;)
    answer.append(buffer, got);
  ::close(fd);
  EXPECT_THAT(answer, HasSubstr("413"));
  EXPECT_THAT(answer, HasSubstr("--max_message_bytes"));
  // Chunked bodies (no Content-Length) are cut off at the limit too.
  auto http = Client();
  auto chunked = http.Post(
      "/v1/propose",
      [](size_t offset, httplib::DataSink& sink) {
        if (offset >= 6'000'000) {
          sink.done();
          return true;
        }
        const std::string chunk(100'000, 'y');
        return sink.write(chunk.data(), chunk.size());
      },
      "image/png");
  if (chunked) {  // or the connection was closed while sending
    EXPECT_EQ(chunked->status, 413) << chunked->body;
    EXPECT_EQ(ErrorCode(chunked), "OUT_OF_RANGE");
  }
  EXPECT_EQ(Post(http, "/v1/propose?resize=64", Photo())->status, 200);
}

TEST_F(HttpApiTest, SlowAndIdleConnectionsDelayNobody) {
  auto http = Client();
  const std::string photo = Photo();
  // Unloaded first, for comparison.
  auto timed = [&] {
    const auto start = std::chrono::steady_clock::now();
    auto result = Post(http, "/v1/propose?resize=64", photo);
    EXPECT_TRUE(result && result->status == 200);
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now() - start)
        .count();
  };
  timed();
  const double alone_ms = timed();
  // 25 idle connections and 25 that send a request a few bytes at a time.
  std::vector<int> sockets;
  for (int i = 0; i < 50; ++i) {
    const int fd = primaps::testing::ConnectLoopback(server_->http_port());
    ASSERT_GE(fd, 0);
    sockets.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    const std::string request =
        "POST /v1/propose HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    for (size_t i = 0; i < request.size() && !stop; ++i) {
      for (size_t s = 25; s < sockets.size(); ++s)
        ::send(sockets[s], request.data() + i, 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  double worst_ms = 0;
  for (int i = 0; i < 5; ++i) worst_ms = std::max(worst_ms, timed());
  const auto get_start = std::chrono::steady_clock::now();
  EXPECT_EQ(http.Get("/v1/model")->status, 200);
  const double model_ms = std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - get_start)
                              .count();
  stop = true;
  trickle.join();
  for (int fd : sockets) ::close(fd);
  std::printf(
      "propose alone %.1f ms; beside 50 slow or idle connections at most "
      "%.1f ms; /v1/model %.1f ms\n",
      alone_ms, worst_ms, model_ms);
  // Queued behind the idle connections, a request would wait for their
  // 5 s read timeout.
  EXPECT_LT(worst_ms, alone_ms + 2000);
  EXPECT_LT(model_ms, 1000);
}

TEST_F(HttpApiTest, RequestsAreCountedInTheSameMetrics) {
  auto http = Client();
  ASSERT_EQ(Post(http, "/v1/propose?resize=64", Photo())->status, 200);
  ASSERT_EQ(Post(http, "/v1/propose", "bad")->status, 400);
  const std::string metrics = http.Get("/metrics")->body;
  EXPECT_THAT(metrics, HasSubstr("primaps_requests_total{code=\"OK\",method="
                                 "\"HTTP ProposeMasks\"} 1"));
  EXPECT_THAT(metrics,
              HasSubstr("primaps_requests_total{code=\"INVALID_ARGUMENT\","
                        "method=\"HTTP ProposeMasks\"} 1"));
  EXPECT_THAT(primaps::testing::HttpGet(server_->metrics_port(), "/metrics"),
              HasSubstr("method=\"HTTP ProposeMasks\""));
}

// Every code the pipeline answers has its HTTP status; the ones the tests
// above cannot provoke on a healthy server (UNAVAILABLE while shutting
// down) are checked here.
TEST(HttpStatusForTest, EveryCodeMapsAsDocumented) {
  using absl::StatusCode;
  EXPECT_EQ(HttpStatusFor(StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(StatusCode::kOutOfRange), 400);
  EXPECT_EQ(HttpStatusFor(StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(StatusCode::kFailedPrecondition), 412);
  EXPECT_EQ(HttpStatusFor(StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(StatusCode::kUnimplemented), 501);
  EXPECT_EQ(HttpStatusFor(StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusFor(StatusCode::kDataLoss), 500);
}

TEST_F(HttpApiTest, ServesTheWebPage) {
  auto http = Client();
  auto page = http.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("<title>PriMaPs Serve</title>"));
  auto script = http.Get("/app.js");
  EXPECT_EQ(script->status, 200);
  EXPECT_THAT(script->get_header_value("Content-Type"),
              HasSubstr("text/javascript"));
  EXPECT_THAT(script->body, HasSubstr("/v1/"));
  EXPECT_EQ(http.Get("/style.css")->status, 200);
}

}  // namespace
}  // namespace primaps
