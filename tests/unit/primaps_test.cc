#include "engine/primaps.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/checkpoint/safetensors.h"
#include "engine/primaps_batch.h"
#include "engine/vit/vit_backbone.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::testing::HasSubstr;

FeatureMap FromRecord(const TensorRecord& r) {
  return FeatureMap{static_cast<int>(r.shape[0]), static_cast<int>(r.shape[1]),
                    static_cast<int>(r.shape[2]), Float32Values(r)};
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

NormalizedImage GreyImage(int h, int w) {
  NormalizedImage image;
  image.height = image.valid_height = h;
  image.width = image.valid_width = w;
  image.data.assign(static_cast<size_t>(3) * h * w, 0.f);
  return image;
}

// Three clusters: left third, middle third, right third of a 12x12 grid.
FeatureMap PlantedClusters(uint32_t seed) {
  const int d = 16, h = 12, w = 12;
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.05f);
  FeatureMap f{d, h, w, std::vector<float>(d * h * w)};
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int cluster = x / 4;
      for (int c = 0; c < d; ++c) {
        const float centre =
            (c % 3 == cluster ? 2.f : -1.f) + (c == 15 ? 1.f : 0.f);
        f.data[(c * h + y) * w + x] = centre + noise(rng);
      }
    }
  }
  return f;
}

class PriMaPsGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PriMaPsGoldenTest, EveryStepMatchesReference) {
  auto golden = ParseSafetensors(
      testing::ReadBinary(testing::FixturePath("primaps_golden.safetensors")));
  ASSERT_TRUE(golden.ok()) << golden.status();
  const std::string name = GetParam();
  const FeatureMap features =
      FromRecord(golden->tensors.at(name + ".features"));
  PriMaPsOptions options;
  auto masks = ProposeSoftMasks(features, options);
  ASSERT_TRUE(masks.ok()) << masks.status();
  const TensorRecord& want_masks = golden->tensors.at(name + ".masks");
  ASSERT_EQ(masks->num_masks, want_masks.shape[0]);
  EXPECT_GE(masks->num_masks, 2);
  // Anchors are discrete: exactly equal.
  const TensorRecord& anchors = golden->tensors.at(name + ".anchors");
  for (int m = 0; m < masks->num_masks; ++m) {
    int64_t a;
    std::memcpy(&a, anchors.data.data() + 8 * m, 8);
    EXPECT_EQ(masks->anchors[m], a) << "mask " << m;
  }
  EXPECT_LT(MaxAbsDiff(masks->masks, Float32Values(want_masks)), 1e-5f);
  const std::vector<float> refined = RefineMasks(*masks);
  EXPECT_LT(
      MaxAbsDiff(refined, Float32Values(golden->tensors.at(name + ".refined"))),
      1e-5f);
  const std::vector<float> stacked =
      WithBackground(refined, masks->num_masks, masks->height, masks->width);
  EXPECT_LT(
      MaxAbsDiff(stacked,
                 Float32Values(golden->tensors.at(name + ".with_background"))),
      1e-5f);
  const std::vector<float> probs =
      UpsampledProbabilities(stacked, masks->num_masks + 1, masks->height,
                             masks->width, masks->height * 8, masks->width * 8);
  EXPECT_LT(
      MaxAbsDiff(probs, Float32Values(golden->tensors.at(name + ".probs"))),
      1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Features, PriMaPsGoldenTest,
                         ::testing::Values("planted", "dino"));

TEST(PriMaPsTest, ThreePlantedClustersGiveThreeMasks) {
  const FeatureMap features = PlantedClusters(1);
  PriMaPsOptions options;
  options.use_crf = false;
  auto result = ComputePriMaPs(features, GreyImage(96, 96), options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->proposals.num_masks, 3);
  // Each mask is exactly one cluster on the grid.
  std::vector<int> cluster_of_mask(3, -1);
  for (int m = 0; m < 3; ++m) {
    for (int i = 0; i < 144; ++i) {
      const bool in_mask = result->proposals.masks[m * 144 + i] > 0;
      const int cluster = (i % 12) / 4;
      if (in_mask) {
        if (cluster_of_mask[m] < 0) cluster_of_mask[m] = cluster;
        EXPECT_EQ(cluster, cluster_of_mask[m])
            << "mask " << m << " position " << i;
      } else {
        EXPECT_NE(cluster, cluster_of_mask[m])
            << "mask " << m << " misses position " << i;
      }
    }
  }
  // The full-resolution label map follows the clusters away from borders.
  const LabelMap& labels = result->mask_labels;
  for (int x : {4, 44, 84}) {
    const uint8_t label = labels.labels[48 * 96 + x];
    EXPECT_GT(label, 0);
    EXPECT_EQ(
        label,
        1 + std::find(cluster_of_mask.begin(), cluster_of_mask.end(), x / 32) -
            cluster_of_mask.begin());
  }
}

TEST(PriMaPsTest, ConstantFeaturesGiveOneMaskAndStop) {
  FeatureMap f{4, 5, 6, std::vector<float>(4 * 5 * 6, 0.5f)};
  auto masks = ProposeSoftMasks(f, {});
  ASSERT_TRUE(masks.ok()) << masks.status();
  EXPECT_EQ(masks->num_masks, 1);
  for (float v : masks->masks) EXPECT_EQ(v, 1.f);
}

TEST(PriMaPsTest, ZeroFeaturesStopWithNoMask) {
  FeatureMap f{4, 5, 6, std::vector<float>(4 * 5 * 6, 0.f)};
  PriMaPsOptions options;
  options.use_crf = false;
  auto result = ComputePriMaPs(f, GreyImage(40, 48), options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->proposals.num_masks, 0);
  for (uint8_t l : result->mask_labels.labels) EXPECT_EQ(l, 0);
}

TEST(PriMaPsTest, HardCapLimitsMasks) {
  std::mt19937 rng(5);
  std::normal_distribution<float> noise;
  FeatureMap f{8, 10, 10, std::vector<float>(800)};
  for (float& v : f.data) v = noise(rng);
  PriMaPsOptions options;
  options.threshold = 0.99f;  // tiny masks: many iterations needed
  options.max_masks = 4;
  auto masks = ProposeSoftMasks(f, options);
  ASSERT_TRUE(masks.ok());
  EXPECT_EQ(masks->num_masks, 4);
  EXPECT_TRUE(masks->capped);
  options.max_masks = 100;
  auto uncapped = ProposeSoftMasks(f, options);
  ASSERT_TRUE(uncapped.ok());
  EXPECT_GT(uncapped->num_masks, 4);
  EXPECT_FALSE(uncapped->capped);
}

TEST(PriMaPsTest, BadInputIsRefused) {
  FeatureMap nan{4, 4, 4, std::vector<float>(64, 1.f)};
  nan.data[17] = NAN;
  EXPECT_THAT(std::string(ProposeSoftMasks(nan, {}).status().message()),
              HasSubstr("non-finite"));
  FeatureMap inf = nan;
  inf.data[17] = INFINITY;
  EXPECT_EQ(ProposeSoftMasks(inf, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  FeatureMap thin{4, 1, 8, std::vector<float>(32, 1.f)};
  EXPECT_THAT(std::string(ProposeSoftMasks(thin, {}).status().message()),
              HasSubstr("2x2"));
  FeatureMap ok{4, 4, 4, std::vector<float>(64, 1.f)};
  auto mismatch = ComputePriMaPs(ok, GreyImage(32, 40), {});
  EXPECT_THAT(std::string(mismatch.status().message()),
              HasSubstr("expected 5x4"));
  PriMaPsOptions bad;
  bad.threshold = NAN;
  EXPECT_EQ(ProposeSoftMasks(ok, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = {};
  bad.coverage = 0;
  EXPECT_EQ(ProposeSoftMasks(ok, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  FeatureMap short_data{4, 4, 4, std::vector<float>(10)};
  EXPECT_EQ(ProposeSoftMasks(short_data, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PseudoLabelTest, WithoutPriorMasksKeepTheirIds) {
  LabelMap masks{4, 1, {0, 1, 2, 2}};
  auto labels = PseudoLabels(masks, nullptr);
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(labels->labels, (std::vector<uint8_t>{255, 1, 2, 2}));
}

TEST(PseudoLabelTest, PriorMajorityWithTiesToSmallestId) {
  LabelMap masks{8, 1, {0, 1, 1, 1, 2, 2, 3, 3}};
  LabelMap prior{8, 1, {9, 5, 5, 7, 4, 3, 255, 255}};
  auto labels = PseudoLabels(masks, &prior);
  ASSERT_TRUE(labels.ok());
  // Mask 1: class 5 (2 votes); mask 2: tie 4 vs 3 -> 3; mask 3: only
  // ignored votes -> ignore; background -> ignore.
  EXPECT_EQ(labels->labels,
            (std::vector<uint8_t>{255, 5, 5, 5, 3, 3, 255, 255}));
  LabelMap small{2, 1, {0, 0}};
  EXPECT_FALSE(PseudoLabels(masks, &small).ok());
}

TEST(PriMaPsTest, DeterministicAcrossRunsAndThreadCounts) {
  auto golden = ParseSafetensors(
      testing::ReadBinary(testing::FixturePath("primaps_golden.safetensors")));
  ASSERT_TRUE(golden.ok());
  const FeatureMap features = FromRecord(golden->tensors.at("dino.features"));
  NormalizedImage image = GreyImage(features.height * 8, features.width * 8);
  std::mt19937 rng(2);
  for (float& v : image.data)
    v = static_cast<float>(rng() % 1000) / 400.f - 1.2f;
  std::vector<uint8_t> first;
  std::vector<float> first_masks;
  for (int threads : {1, 2, 1, 2}) {
    SetTorchThreads(threads);
    auto result = ComputePriMaPs(features, image, {});
    ASSERT_TRUE(result.ok()) << result.status();
    if (first.empty()) {
      first = result->mask_labels.labels;
      first_masks = result->proposals.masks;
    } else {
      EXPECT_EQ(result->mask_labels.labels, first) << threads << " threads";
      EXPECT_EQ(result->proposals.masks, first_masks) << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace primaps

namespace primaps {
namespace {

TEST(PriMaPsBatchTest, BatchEqualsOneAtATime) {
  std::vector<FeatureMap> features;
  std::vector<NormalizedImage> images;
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    features.push_back(PlantedClusters(seed));
    images.push_back(GreyImage(96, 96));
    std::mt19937 rng(seed);
    for (float& v : images.back().data)
      v = static_cast<float>(rng() % 1000) / 400.f - 1.2f;
  }
  // One bad input in the middle: its error must not disturb the others.
  features.push_back(FeatureMap{4, 1, 1, {0, 0, 0, 0}});
  images.push_back(GreyImage(8, 8));
  std::vector<PriMaPsInput> inputs;
  for (size_t i = 0; i < features.size(); ++i)
    inputs.push_back({&features[i], &images[i]});
  PriMaPsOptions options;
  ThreadPool pool(3);
  const auto batch = ComputePriMaPsBatch(inputs, options, &pool);
  ASSERT_EQ(batch.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto single = ComputePriMaPs(features[i], images[i], options);
    ASSERT_EQ(batch[i].ok(), single.ok()) << i;
    if (!single.ok()) {
      EXPECT_EQ(batch[i].status(), single.status());
      continue;
    }
    EXPECT_EQ(batch[i]->mask_labels.labels, single->mask_labels.labels) << i;
    EXPECT_EQ(batch[i]->proposals.masks, single->proposals.masks) << i;
  }
  EXPECT_FALSE(batch.back().ok());
}

}  // namespace
}  // namespace primaps
