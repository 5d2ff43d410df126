// Label maps at the original resolution (output_size ORIGINAL), through the
// real primaps-server binary: exact sizes for odd shapes, agreement with
// the processed-size labels, memory on a large photo, and the limits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <opencv2/imgproc.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/segmentation_head.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"
#include "tests/unit/test_heads.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::Client;
using ::primaps::testing::ServerProcess;
using ::primaps::testing::TempDir;
using ::testing::HasSubstr;

// A photo-like scene: a sky band, two regions below, a disc, and noise.
cv::Mat SceneMat(int width, int height, int seed) {
  cv::Mat mat(height, width, CV_8UC3);
  std::mt19937 rng(seed);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int region = y < height / 3 ? 0 : (x < width / 2 ? 1 : 2);
      for (int c = 0; c < 3; ++c) {
        mat.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>(
            (region * 80 + c * 50 + seed * 13) % 200 + rng() % 30);
      }
    }
  }
  cv::circle(mat, {width * 2 / 3, height * 2 / 3},
             std::max(1, std::min(width, height) / 5), {30, 200, 60},
             cv::FILLED);
  return mat;
}

std::string Scene(int width, int height, const std::string& ext = ".png") {
  return primaps::testing::Encode(SceneMat(width, height, width + height), ext);
}

std::string HeadBytes(int classes) {
  return primaps::testing::RandomBuiltinHeadBytes(classes, 4.f, 11);
}

v1::ImageRequest Request(const std::string& bytes, v1::OutputSize size) {
  v1::ImageRequest request;
  request.mutable_image()->set_encoded(bytes);
  request.mutable_preprocess()->set_output_size(size);
  return request;
}

// A field of /proc/PID/status in kB (VmRSS, VmHWM).
int64_t StatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0)
      return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

// Share of pixels where `original` equals `processed`'s content window
// (geometry's processed size) resized to the original size with nearest
// neighbour (src = floor(dst * in / out)).
double AgreementWithUpsampled(const v1::LabelMap& processed,
                              const v1::LabelMap& original,
                              const v1::LabelGeometry& geometry) {
  const int rows = geometry.processed_height(),
            cols = geometry.processed_width();
  const int out_w = original.width(), out_h = original.height();
  int64_t same = 0;
  for (int y = 0; y < out_h; ++y) {
    const int sy = static_cast<int>(static_cast<int64_t>(y) * rows / out_h);
    for (int x = 0; x < out_w; ++x) {
      const int sx = static_cast<int>(static_cast<int64_t>(x) * cols / out_w);
      same += processed.labels()[sy * processed.width() + sx] ==
              original.labels()[static_cast<size_t>(y) * out_w + x];
    }
  }
  return static_cast<double>(same) / (static_cast<double>(out_w) * out_h);
}

class OriginalSizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    head_ = dir_.Write("head.safetensors", HeadBytes(5));
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--head=" + head_, "--cpu_threads=2", "--max_queue_delay_ms=1",
        "--max_crf_pixels=200000"});
    ASSERT_TRUE(server_->started()) << server_->Log();
    client_ = Client(*server_);
  }

  TempDir dir_;
  std::string head_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<PrimapsClient> client_;
};

TEST_F(OriginalSizeTest, EveryMethodAnswersAtTheInputSizeForOddShapes) {
  struct Shape {
    int width, height;
  };
  for (const Shape s : {Shape{1, 1}, Shape{1, 2000}, Shape{2000, 1},
                        Shape{333, 500}, Shape{1000, 750}, Shape{2048, 1024}}) {
    SCOPED_TRACE(absl::StrCat(s.width, "x", s.height));
    const v1::ImageRequest request =
        Request(Scene(s.width, s.height), v1::OUTPUT_SIZE_ORIGINAL);
    auto masks = client_->ProposeMasks(request);
    ASSERT_TRUE(masks.ok()) << masks.status();
    EXPECT_EQ(masks->masks().width(), static_cast<uint32_t>(s.width));
    EXPECT_EQ(masks->masks().height(), static_cast<uint32_t>(s.height));
    EXPECT_EQ(masks->masks().labels().size(),
              static_cast<size_t>(s.width) * s.height);
    const v1::LabelGeometry& g = masks->geometry();
    EXPECT_EQ(g.output_size(), v1::OUTPUT_SIZE_ORIGINAL);
    EXPECT_EQ(g.crop(), v1::CROP_MODE_FULL);
    EXPECT_EQ(g.input_width(), static_cast<uint32_t>(s.width));
    EXPECT_EQ(g.output_height(), static_cast<uint32_t>(s.height));
    EXPECT_EQ(g.crf_resolution(), v1::CRF_RESOLUTION_PROCESSED);
    uint64_t area = 0;
    for (uint64_t a : masks->mask_area()) area += a;
    EXPECT_EQ(area, static_cast<uint64_t>(s.width) * s.height);

    auto pseudo = client_->PseudoLabel(request);
    ASSERT_TRUE(pseudo.ok()) << pseudo.status();
    EXPECT_EQ(pseudo->labels().width(), static_cast<uint32_t>(s.width));
    EXPECT_EQ(pseudo->labels().height(), static_cast<uint32_t>(s.height));
    EXPECT_EQ(pseudo->masks().labels().size(),
              static_cast<size_t>(s.width) * s.height);
    auto segment = client_->Segment(request);
    ASSERT_TRUE(segment.ok()) << segment.status();
    EXPECT_EQ(segment->labels().width(), static_cast<uint32_t>(s.width));
    EXPECT_EQ(segment->labels().height(), static_cast<uint32_t>(s.height));
  }
  // The extreme aspect ratio ran at a lower resize, and says so.
  auto thin =
      client_->ProposeMasks(Request(Scene(1, 2000), v1::OUTPUT_SIZE_ORIGINAL));
  ASSERT_TRUE(thin.ok());
  EXPECT_LT(thin->geometry().resize(), 320u);
  EXPECT_GE(thin->geometry().resize(), 16u);
}

TEST_F(OriginalSizeTest, ExifRotatedJpegAnswersAtTheDisplayedSize) {
  // Stored 300 wide and 200 high; orientation 6 displays it 200x300.
  const std::string jpeg =
      primaps::testing::WithExifOrientation(Scene(300, 200, ".jpg"), 6);
  auto masks = client_->ProposeMasks(Request(jpeg, v1::OUTPUT_SIZE_ORIGINAL));
  ASSERT_TRUE(masks.ok()) << masks.status();
  EXPECT_EQ(masks->masks().width(), 200u);
  EXPECT_EQ(masks->masks().height(), 300u);
  EXPECT_EQ(masks->geometry().input_width(), 200u);
  EXPECT_EQ(masks->geometry().input_height(), 300u);
}

TEST_F(OriginalSizeTest, AgreesWithTheProcessedLabelsUpsampled) {
  for (const char* name :
       {"cityscapes_example.png", "coco_example.jpg", "potsdam_example.png"}) {
    SCOPED_TRACE(name);
    const std::string bytes =
        primaps::testing::ReadBinary(primaps::testing::DemoImagePath(name));
    ASSERT_FALSE(bytes.empty()) << "demo photo missing";
    v1::ImageRequest processed = Request(bytes, v1::OUTPUT_SIZE_PROCESSED);
    processed.mutable_preprocess()->set_crop(v1::CROP_MODE_FULL);
    const v1::ImageRequest original = Request(bytes, v1::OUTPUT_SIZE_ORIGINAL);
    auto small = client_->PseudoLabel(processed);
    auto large = client_->PseudoLabel(original);
    ASSERT_TRUE(small.ok()) << small.status();
    ASSERT_TRUE(large.ok()) << large.status();
    EXPECT_EQ(small->mask_count(), large->mask_count());
    const double masks = AgreementWithUpsampled(small->masks(), large->masks(),
                                                small->geometry());
    const double labels = AgreementWithUpsampled(
        small->labels(), large->labels(), small->geometry());
    std::printf("%s: masks %.4f, pseudo labels %.4f agree\n", name, masks,
                labels);
    EXPECT_GE(masks, 0.97);
    EXPECT_GE(labels, 0.97);
  }
}

TEST_F(OriginalSizeTest, CrfAtTheOriginalResolutionIsAnOption) {
  v1::ImageRequest request = Request(Scene(400, 300), v1::OUTPUT_SIZE_ORIGINAL);
  auto at_processed = client_->ProposeMasks(request);
  request.mutable_preprocess()->set_crf_resolution(v1::CRF_RESOLUTION_ORIGINAL);
  auto at_original = client_->ProposeMasks(request);
  ASSERT_TRUE(at_processed.ok()) << at_processed.status();
  ASSERT_TRUE(at_original.ok()) << at_original.status();
  EXPECT_EQ(at_original->geometry().crf_resolution(),
            v1::CRF_RESOLUTION_ORIGINAL);
  EXPECT_EQ(at_original->masks().width(), 400u);
  int64_t same = 0;
  const std::string& a = at_processed->masks().labels();
  const std::string& b = at_original->masks().labels();
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_GE(static_cast<double>(same) / a.size(), 0.9);
}

TEST_F(OriginalSizeTest, RequestsOverTheLimitsAreRefusedNamingThem) {
  const std::string scene = Scene(2048, 1024);
  auto before =
      client_->ProposeMasks(Request(Scene(160, 120), v1::OUTPUT_SIZE_ORIGINAL));
  ASSERT_TRUE(before.ok()) << before.status();

  // 2048x1024 whole at resize 2048 is 256 x 512 patch tokens.
  v1::ImageRequest tokens = Request(scene, v1::OUTPUT_SIZE_ORIGINAL);
  tokens.mutable_preprocess()->set_resize(2048);
  auto refused = client_->ProposeMasks(tokens);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("131072 patch tokens; the limit is 16384 "
                        "(--max_tokens)"));

  v1::ImageRequest crf = Request(scene, v1::OUTPUT_SIZE_ORIGINAL);
  crf.mutable_preprocess()->set_crf_resolution(v1::CRF_RESOLUTION_ORIGINAL);
  refused = client_->ProposeMasks(crf);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("--max_crf_pixels"));

  v1::ImageRequest center = Request(scene, v1::OUTPUT_SIZE_ORIGINAL);
  center.mutable_preprocess()->set_crop(v1::CROP_MODE_CENTER);
  refused = client_->ProposeMasks(center);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("FULL"));

  v1::ImageRequest probabilities = Request(scene, v1::OUTPUT_SIZE_ORIGINAL);
  probabilities.set_probabilities(true);
  EXPECT_EQ(client_->Segment(probabilities).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Nothing else changed: the same request gets the same answer.
  auto after =
      client_->ProposeMasks(Request(Scene(160, 120), v1::OUTPUT_SIZE_ORIGINAL));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->masks().labels(), before->masks().labels());
}

// A 4000x3000 photo labelled at its own size: the server's peak resident
// memory during the call stays within a stated bound above its level
// before (the scores are never held at the original size).
TEST_F(OriginalSizeTest, LargePhotoStaysUnderTheMemoryBound) {
  const std::string jpeg = Scene(4000, 3000, ".jpg");
  // Warm up the pools and allocators on a small image first.
  ASSERT_TRUE(
      client_->ProposeMasks(Request(Scene(400, 300), v1::OUTPUT_SIZE_ORIGINAL))
          .ok());
  const pid_t pid = server_->pid();
  // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
  {
    std::ofstream clear("/proc/" + std::to_string(pid) + "/clear_refs");
    clear << "5";
  }
  const int64_t rss_before = StatusKb(pid, "VmRSS");
  auto masks = client_->ProposeMasks(Request(jpeg, v1::OUTPUT_SIZE_ORIGINAL));
  ASSERT_TRUE(masks.ok()) << masks.status();
  EXPECT_EQ(masks->masks().width(), 4000u);
  EXPECT_EQ(masks->masks().height(), 3000u);
  const int64_t peak = StatusKb(pid, "VmHWM");
  ASSERT_GT(rss_before, 0);
  const double growth_mb = (peak - rss_before) / 1024.0;
  std::printf(
      "4000x3000 original-size labels: peak RSS %.0f MB above the "
      "%.0f MB before\n",
      growth_mb, rss_before / 1024.0);
  // Decoded pixels (36 MB), the request and response (12 MB labels twice)
  // and the processed-size work: 109 MB measured; 250 MB is the bound.
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine inflates RSS
  EXPECT_LT(growth_mb, 250.0);
#endif
}

}  // namespace
}  // namespace primaps
