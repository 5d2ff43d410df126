#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "base/file_util.h"
#include "engine/checkpoint/safetensors.h"
#include "trainer/augment.h"
#include "trainer/em_schedule.h"
#include "trainer/evaluation.h"
#include "trainer/head_trainer.h"
#include "trainer/synthetic_dataset.h"

namespace primaps {
namespace {

double BruteForceBest(const std::vector<std::vector<double>>& w) {
  const int rows = static_cast<int>(w.size()),
            cols = static_cast<int>(w[0].size());
  std::vector<int> perm(std::max(rows, cols));
  std::iota(perm.begin(), perm.end(), 0);
  double best = -1;
  do {
    double total = 0;
    for (int i = 0; i < rows; ++i) {
      if (perm[i] < cols) total += w[i][perm[i]];
    }
    best = std::max(best, total);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

TEST(HungarianTest, MatchesBruteForce) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 60; ++trial) {
    const int rows = 1 + trial % 6, cols = 1 + (trial / 6) % 6;
    std::vector<std::vector<double>> w(rows, std::vector<double>(cols));
    for (auto& row : w) {
      for (double& x : row) x = rng() % 100;
    }
    const std::vector<int> assignment = MaxWeightAssignment(w);
    double total = 0;
    std::vector<bool> used(cols, false);
    for (int i = 0; i < rows; ++i) {
      if (assignment[i] < 0) continue;
      ASSERT_FALSE(used[assignment[i]]) << "column used twice";
      used[assignment[i]] = true;
      total += w[i][assignment[i]];
    }
    EXPECT_EQ(total, BruteForceBest(w)) << rows << "x" << cols;
  }
}

TEST(ScoreTest, HandMadeConfusionMatrices) {
  // Perfect but permuted clusters: 100% / 100%.
  ConfusionMatrix perfect(3, 3);
  perfect.Add(0, 2, 50);
  perfect.Add(1, 0, 30);
  perfect.Add(2, 1, 20);
  SegmentationScores s = Score(perfect);
  EXPECT_DOUBLE_EQ(s.accuracy, 100);
  EXPECT_DOUBLE_EQ(s.miou, 100);
  EXPECT_EQ(s.cluster_to_class, (std::vector<int>{2, 0, 1}));
  // Two classes, two clusters: cluster 0 = {class0: 8, class1: 2},
  // cluster 1 = {class0: 1, class1: 9}. Matching identity.
  ConfusionMatrix m(2, 2);
  m.Add(0, 0, 8);
  m.Add(0, 1, 2);
  m.Add(1, 0, 1);
  m.Add(1, 1, 9);
  s = Score(m);
  EXPECT_DOUBLE_EQ(s.accuracy, 85);
  // IoU0 = 8 / (10 + 9 - 8) = 8/11; IoU1 = 9 / (10 + 11 - 9) = 9/12.
  EXPECT_NEAR(s.class_iou[0], 800.0 / 11, 1e-9);
  EXPECT_NEAR(s.class_iou[1], 75, 1e-9);
  EXPECT_NEAR(s.miou, (800.0 / 11 + 75) / 2, 1e-9);
  // A class never predicted nor present has no IoU and does not count.
  ConfusionMatrix absent(3, 3);
  absent.Add(0, 0, 5);
  absent.Add(1, 1, 5);
  s = Score(absent);
  EXPECT_TRUE(std::isnan(s.class_iou[2]));
  EXPECT_DOUBLE_EQ(s.miou, 100);
}

TEST(ScoreTest, ConfusionFromLabelMapsIgnores255) {
  ConfusionMatrix m(2, 2);
  LabelMap prediction{3, 1, {0, 1, 1}};
  LabelMap truth{3, 1, {0, 255, 1}};
  ASSERT_TRUE(m.Add(prediction, truth).ok());
  EXPECT_EQ(m.total(), 2);
  EXPECT_FALSE(m.Add(LabelMap{3, 1, {5, 0, 0}}, truth).ok());
}

TEST(EmaScheduleTest, CopiesTwiceThenAverages) {
  EXPECT_FALSE(IsEmaStep(9));
  EXPECT_TRUE(IsEmaStep(10));
  EXPECT_TRUE(IsEmaStep(20));
  EXPECT_EQ(EmaDecay(1), 0.0);
  EXPECT_EQ(EmaDecay(2), 0.0);
  EXPECT_DOUBLE_EQ(EmaDecay(3), 2.0 / 3);
  EXPECT_DOUBLE_EQ(EmaDecay(10), 0.9);
  EXPECT_DOUBLE_EQ(EmaDecay(50), 0.98);
  EXPECT_DOUBLE_EQ(EmaDecay(1000), 0.98);
}

TEST(FocalLossTest, WeightsClassesByOneMinusMeanConfidence) {
  // Two pixels, two classes; logits (2, 0) and (0, 1); targets 0 and 1;
  // a third pixel ignored.
  const std::vector<float> logits = {2, 0, 0, 1, 5, -5};
  const std::vector<int64_t> targets = {0, 1, 255};
  const double p00 = std::exp(2) / (std::exp(2) + 1),
               p11 = std::exp(1) / (std::exp(1) + 1),
               p20 = std::exp(5) / (std::exp(5) + std::exp(-5));
  // Mean confidence per class over all pixels, the ignored one included.
  const double c0 = (p00 + (1 - p11) + p20) / 3,
               c1 = ((1 - p00) + p11 + (1 - p20)) / 3;
  const double w0 = std::pow(1 - c0, 2), w1 = std::pow(1 - c1, 2);
  // The weighted losses of the valid pixels over the count of all pixels.
  const double expected = (w0 * -std::log(p00) + w1 * -std::log(p11)) / 3;
  EXPECT_NEAR(HeadTrainer::FocalLossForTest(logits, targets, 2, 2.0), expected,
              1e-6);
  // gamma = 0: cross entropy, still divided by all three pixels.
  EXPECT_NEAR(HeadTrainer::FocalLossForTest(logits, targets, 2, 0.0),
              (-std::log(p00) - std::log(p11)) / 3, 1e-6);
}

// Against tests/golden/make_trainer_golden.py: the reference's focal loss on
// random logits (2-27 classes, 30% of the pixels ignored, two gammas).
TEST(FocalLossTest, EqualsTheReferenceGolden) {
  auto bytes = ReadFile(std::string(PRIMAPS_SOURCE_DIR) +
                        "/tests/golden/fixtures/trainer_golden.safetensors");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = ParseSafetensors(*bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  for (int c = 0; c < 3; ++c) {
    SCOPED_TRACE(c);
    const std::string name = "focal" + std::to_string(c);
    const TensorRecord& l = file->tensors.at(name + ".logits");
    const std::vector<float> logits = Float32Values(l);
    const int64_t b = l.shape[0], k = l.shape[1], hw = l.shape[2] * l.shape[3];
    // [B, K, H, W] to pixel-major [B*H*W, K].
    std::vector<float> rows(logits.size());
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < k; ++j)
        for (int64_t p = 0; p < hw; ++p)
          rows[(i * hw + p) * k + j] = logits[(i * k + j) * hw + p];
    const TensorRecord& t = file->tensors.at(name + ".target");
    std::vector<int64_t> targets(t.data.size() / 8);
    std::memcpy(targets.data(), t.data.data(), t.data.size());
    const double gamma = Float32Values(file->tensors.at(name + ".gamma"))[0];
    const double want = Float32Values(file->tensors.at(name + ".loss"))[0];
    EXPECT_NEAR(HeadTrainer::FocalLossForTest(rows, targets,
                                              static_cast<int>(k), gamma),
                want, 1e-5 * std::abs(want));
  }
}

TEST(HeadTrainerTest, PcaInitAndCheckpointRoundTrip) {
  HeadTrainerOptions options;
  options.classes = 2;
  options.dim = 3;
  options.backbone = "builtin";
  auto trainer = *HeadTrainer::Create(options);
  // Features spread mostly along (1, 1, 0).
  FeatureMap f{3, 2, 4, {}};
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 8; ++i)
      f.data.push_back(c < 2 ? static_cast<float>(i) : 0.1f * (i % 2));
  }
  ASSERT_TRUE(trainer->InitFromPca({f}).ok());
  const SegmentationHead head = trainer->Head();
  EXPECT_NEAR(std::abs(head.theta_r.v[0]), std::sqrt(0.5), 1e-4);
  EXPECT_NEAR(std::abs(head.theta_r.v[1]), std::sqrt(0.5), 1e-4);
  EXPECT_EQ(head.theta_m.v, head.theta_r.v);
  // Train a little, save, restore into a fresh trainer: identical state and
  // identical next step.
  TrainingSample sample{f, LabelMap{8, 4, std::vector<uint8_t>(32, 0)}};
  for (int i = 0; i < 16; ++i) sample.target.labels[i] = 1;
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(trainer->EmStep({sample}).ok());
  EXPECT_EQ(trainer->step(), 12);
  EXPECT_EQ(trainer->ema_updates(), 1);
  const std::string bytes = *trainer->SerializeCheckpoint({{"note", "x"}});
  auto restored = *HeadTrainer::Create(options);
  ASSERT_TRUE(restored->RestoreCheckpoint(bytes).ok());
  EXPECT_EQ(restored->step(), 12);
  EXPECT_EQ(restored->Head().theta_r.v, trainer->Head().theta_r.v);
  ASSERT_TRUE(trainer->EmStep({sample}).ok());
  ASSERT_TRUE(restored->EmStep({sample}).ok());
  EXPECT_EQ(restored->Head().theta_r.v, trainer->Head().theta_r.v);
  // The server can read it as a head.
  EXPECT_TRUE(ParseHeadCheckpoint(bytes, "builtin", 3).ok());
}

TEST(HeadTrainerTest, LinearProbeLearnsAndSurvivesACheckpoint) {
  HeadTrainerOptions options;
  options.classes = 2;
  options.dim = 3;
  options.backbone = "builtin";
  options.linear_learning_rate = 5e-2;
  auto trainer = *HeadTrainer::Create(options);
  ASSERT_TRUE(trainer->has_linear_probe());
  // Channel 0 high on the left half (class 0), channel 1 on the right.
  FeatureMap f{3, 2, 4, std::vector<float>(24, 0.f)};
  LabelMap truth{8, 4, std::vector<uint8_t>(32)};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) f.data[(x < 2 ? 0 : 8) + y * 4 + x] = 1.f;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) truth.labels[y * 8 + x] = x < 4 ? 0 : 1;
  truth.labels[0] = 255;  // ignored, but counted in the mean
  const TrainingSample sample{f, truth};
  const double first = *trainer->LinearStep({sample});
  double last = first;
  for (int i = 0; i < 50; ++i) last = *trainer->LinearStep({sample});
  EXPECT_LT(last, 0.5 * first);
  const SegmentationHead head = trainer->Head();
  ASSERT_EQ(head.linear_weight.size(), 6u);
  ASSERT_EQ(head.linear_bias.size(), 2u);
  // The probe travels in the checkpoint, and a restored trainer continues
  // identically.
  const std::string bytes = *trainer->SerializeCheckpoint({});
  auto parsed = ParseHeadCheckpoint(bytes, "builtin", 3);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->linear_weight, head.linear_weight);
  auto restored = *HeadTrainer::Create(options);
  ASSERT_TRUE(restored->RestoreCheckpoint(bytes).ok());
  EXPECT_EQ(*restored->LinearStep({sample}), *trainer->LinearStep({sample}));
  EXPECT_EQ(restored->Head().linear_weight, trainer->Head().linear_weight);
  // Without a learning rate there is no probe.
  options.linear_learning_rate = 0;
  auto plain = *HeadTrainer::Create(options);
  EXPECT_FALSE(plain->has_linear_probe());
  EXPECT_EQ(plain->LinearStep({sample}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(plain->Head().linear_weight.empty());
}

TEST(AugmentTest, DrawsFollowTheReferenceProbabilities) {
  std::mt19937 rng(1);
  int flips = 0, jitter_branch = 0, jitters = 0, grays = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const StudentDraws d = DrawStudent(&rng);
    flips += d.flip;
    jitter_branch += d.jitter_branch;
    jitters += d.jitter_branch && d.jitter;
    grays += !d.jitter_branch && d.grayscale;
    EXPECT_GE(d.sigma, 0.1f);
    EXPECT_LE(d.sigma, 2.f);
    EXPECT_LE(std::abs(d.hue), 0.1f);
    std::array<int, 4> sorted = d.order;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::array<int, 4>{0, 1, 2, 3}));
  }
  EXPECT_NEAR(flips / double(n), 0.5, 0.05);
  EXPECT_NEAR(jitter_branch / double(n), 0.5, 0.05);
  EXPECT_NEAR(jitters / double(n), 0.15, 0.03);  // 0.5 * 0.3
  EXPECT_NEAR(grays / double(n), 0.05, 0.02);    // 0.5 * 0.1
  EXPECT_EQ(FlipHorizontal(LabelMap{3, 2, {1, 2, 3, 4, 5, 6}}).labels,
            (std::vector<uint8_t>{3, 2, 1, 6, 5, 4}));
  EXPECT_EQ(FlipHorizontal(RgbImage{2, 1, {1, 2, 3, 4, 5, 6}}).pixels,
            (std::vector<uint8_t>{4, 5, 6, 1, 2, 3}));
}

// Against tests/golden/make_trainer_golden.py: torchvision's gaussian_blur,
// adjust_brightness/contrast/saturation/hue and rgb_to_grayscale on the
// normalized tensor, with the reference's branch structure and fixed draws.
TEST(AugmentTest, EqualsTorchvisionOnTheNormalizedTensor) {
  auto bytes = ReadFile(std::string(PRIMAPS_SOURCE_DIR) +
                        "/tests/golden/fixtures/trainer_golden.safetensors");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = ParseSafetensors(*bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorRecord& px = file->tensors.at("aug.pixels");
  const RgbImage pixels{static_cast<int>(px.shape[1]),
                        static_cast<int>(px.shape[0]),
                        std::vector<uint8_t>(px.data.begin(), px.data.end())};
  const FloatImage normalized = Normalize(pixels);
  const std::vector<float> want_normalized =
      Float32Values(file->tensors.at("aug.normalized"));
  ASSERT_EQ(normalized.data.size(), want_normalized.size());
  for (size_t i = 0; i < want_normalized.size(); ++i)
    ASSERT_NEAR(normalized.data[i], want_normalized[i], 1e-6);
  for (int c = 0; c < 6; ++c) {
    SCOPED_TRACE(c);
    const std::string name = "aug" + std::to_string(c);
    if (!file->tensors.count(name + ".draws")) break;
    const std::vector<float> v =
        Float32Values(file->tensors.at(name + ".draws"));
    StudentDraws d;
    d.sigma = v[0];
    d.jitter_branch = v[1] != 0;
    d.jitter = v[2] != 0;
    for (int i = 0; i < 4; ++i) d.order[i] = static_cast<int>(v[3 + i]);
    d.brightness = v[7];
    d.contrast = v[8];
    d.saturation = v[9];
    d.hue = v[10];
    d.grayscale = v[11] != 0;
    const FloatImage got = StudentAugment(normalized, d);
    const std::vector<float> want =
        Float32Values(file->tensors.at(name + ".expected"));
    ASSERT_EQ(got.data.size(), want.size());
    double max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i)
      max_diff = std::max(max_diff, double(std::abs(got.data[i] - want[i])));
    // Separable blur and sum order against torchvision's 21x21 convolution:
    // rounding only.
    EXPECT_LT(max_diff, 1e-5);  // measured: at most 3.3e-6
  }
}

TEST(SyntheticDatasetTest, DeterministicWithEveryClass) {
  SyntheticDatasetOptions options;
  options.classes = 4;
  options.cells = 8;
  RgbImage a, b;
  LabelMap la, lb;
  SyntheticImage(options, 3, &a, &la);
  SyntheticImage(options, 3, &b, &lb);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(la.labels, lb.labels);
  std::vector<int> seen(4, 0);
  for (uint8_t l : la.labels) ++seen[l];
  for (int c = 0; c < 4; ++c) EXPECT_GT(seen[c], 0) << c;
}

}  // namespace
}  // namespace primaps
