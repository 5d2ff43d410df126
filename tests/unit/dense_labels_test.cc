#include "engine/dense_labels.h"

#include <gtest/gtest.h>

#include <random>

#include "absl/time/clock.h"
#include "engine/image/channel_maps.h"

namespace primaps {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// A processed image whose content is the top-left rows x cols of h x w.
NormalizedImage Processed(int h, int w, int rows, int cols) {
  NormalizedImage image;
  image.height = h;
  image.width = w;
  image.valid_height = rows;
  image.valid_width = cols;
  image.data = Random(static_cast<size_t>(3) * h * w, 7);
  return image;
}

TEST(ResizeBilinearArgmaxTest, EqualsArgmaxOfTheResizedWindowBitForBit) {
  struct Case {
    int channels, src_h, src_w, rows, cols, out_h, out_w;
  };
  for (const Case& c :
       {Case{5, 40, 48, 40, 45, 333, 500},  // upsampling
        Case{3, 16, 16, 12, 16, 7, 9},      // downsampling
        Case{33, 20, 4000, 16, 4000, 1, 2000}, Case{2, 8, 8, 8, 8, 1, 1},
        Case{1, 4, 6, 4, 6, 10, 3}}) {
    SCOPED_TRACE(testing::Message()
                 << c.channels << " " << c.out_w << "x" << c.out_h);
    const std::vector<float> src =
        Random(static_cast<size_t>(c.channels) * c.src_h * c.src_w, c.out_w);
    std::vector<float> window(static_cast<size_t>(c.channels) * c.rows *
                              c.cols);
    for (int ch = 0; ch < c.channels; ++ch) {
      for (int y = 0; y < c.rows; ++y) {
        for (int x = 0; x < c.cols; ++x) {
          window[(static_cast<size_t>(ch) * c.rows + y) * c.cols + x] =
              src[(static_cast<size_t>(ch) * c.src_h + y) * c.src_w + x];
        }
      }
    }
    const LabelMap expected = ArgmaxLabels(
        ResizeBilinearWindow(window.data(), c.channels, c.rows, c.cols, c.out_h,
                             c.out_w, 0, 0, c.out_h, c.out_w),
        c.channels, c.out_w, c.out_h);
    const LabelMap got =
        *ResizeBilinearArgmax(src.data(), c.channels, c.src_h, c.src_w, c.rows,
                              c.cols, c.out_h, c.out_w);
    EXPECT_EQ(got.width, c.out_w);
    EXPECT_EQ(got.height, c.out_h);
    EXPECT_EQ(got.labels, expected.labels);
  }
}

TEST(DenseLabelsTest, OriginalOutputHasTheOriginalSizeAndProcessedLabels) {
  const int channels = 4, gh = 5, gw = 6;
  const std::vector<float> grid = Random(channels * gh * gw, 3);
  // A 45x37 content in a 48x40 tensor (patch 8), from a 333x277 original.
  const NormalizedImage image = Processed(40, 48, 37, 45);
  for (bool crf : {false, true}) {
    for (GridScores scores : {GridScores::kLogits, GridScores::kMaskScores}) {
      SCOPED_TRACE(testing::Message() << crf << static_cast<int>(scores));
      DenseLabelOptions options;
      options.scores = scores;
      options.use_crf = crf;
      auto processed = ComputeDenseLabels(grid, channels, gh, gw, image,
                                          OutputTarget{}, options);
      ASSERT_TRUE(processed.ok()) << processed.status();
      EXPECT_EQ(processed->labels.width, 48);
      EXPECT_EQ(processed->labels.height, 40);
      OutputTarget target;
      target.size = OutputSize::kOriginal;
      target.width = 333;
      target.height = 277;
      auto original =
          ComputeDenseLabels(grid, channels, gh, gw, image, target, options);
      ASSERT_TRUE(original.ok()) << original.status();
      EXPECT_EQ(original->labels.width, 333);
      EXPECT_EQ(original->labels.height, 277);
      // The same processed map in both modes: votes agree.
      EXPECT_EQ(original->processed_labels.labels, processed->labels.labels);
      // Probabilities, when kept, give the same argmax as the streamed path.
      options.keep_probabilities = true;
      auto kept =
          ComputeDenseLabels(grid, channels, gh, gw, image, target, options);
      ASSERT_TRUE(kept.ok());
      EXPECT_EQ(kept->probabilities.size(),
                static_cast<size_t>(channels) * 333 * 277);
      EXPECT_EQ(kept->labels.labels, original->labels.labels);
    }
  }
}

TEST(DenseLabelsTest, CrfAtTheOriginalSizeNeedsItsPixels) {
  const std::vector<float> grid = Random(2 * 4 * 4, 5);
  const NormalizedImage image = Processed(32, 32, 32, 32);
  OutputTarget target;
  target.size = OutputSize::kOriginal;
  target.crf_resolution = CrfResolution::kOriginal;
  target.width = 50;
  target.height = 40;
  DenseLabelOptions options;
  auto missing = ComputeDenseLabels(grid, 2, 4, 4, image, target, options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  RgbImage pixels{50, 40, std::vector<uint8_t>(50 * 40 * 3, 90)};
  target.pixels = &pixels;
  auto labels = ComputeDenseLabels(grid, 2, 4, 4, image, target, options);
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->labels.width, 50);
  EXPECT_EQ(labels->labels.height, 40);
}

TEST(DenseLabelsTest, RefusesAGridOfTheWrongSize) {
  const NormalizedImage image = Processed(32, 32, 32, 32);
  auto bad = ComputeDenseLabels(std::vector<float>(10), 2, 4, 4, image,
                                OutputTarget{}, DenseLabelOptions{});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DenseLabelsTest, AStoppedCallStopsInTheCrfAndTheResize) {
  const std::vector<float> grid = Random(3 * 8 * 8, 9);
  const NormalizedImage image = Processed(64, 64, 64, 64);
  const StopCheck cancelled(absl::InfiniteFuture(), [] { return true; });
  const StopCheck expired(absl::Now() - absl::Seconds(1), nullptr);
  DenseLabelOptions options;
  options.crf.stop = &cancelled;
  auto crf = ComputeDenseLabels(grid, 3, 8, 8, image, OutputTarget{}, options);
  EXPECT_EQ(crf.status().code(), absl::StatusCode::kCancelled);
  options.use_crf = false;
  options.crf.stop = &expired;
  OutputTarget target;
  target.size = OutputSize::kOriginal;
  target.width = 300;
  target.height = 300;
  auto resized = ComputeDenseLabels(grid, 3, 8, 8, image, target, options);
  EXPECT_EQ(resized.status().code(), absl::StatusCode::kDeadlineExceeded);
  // Directly: the CRF's lattice and mean field poll too.
  RgbImage rgb{64, 64, std::vector<uint8_t>(64 * 64 * 3, 100)};
  std::vector<float> probs(3 * 64 * 64, 1.f / 3);
  DenseCrfOptions crf_options;
  crf_options.stop = &expired;
  EXPECT_EQ(DenseCrfInference(rgb, probs, 3, crf_options).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace primaps
