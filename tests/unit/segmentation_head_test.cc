#include "engine/segmentation_head.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/checkpoint/safetensors.h"
#include "engine/image/channel_maps.h"
#include "engine/image/preprocess.h"

namespace primaps {
namespace {

using ::testing::HasSubstr;

SegmentationHead RandomHead(int k, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  SegmentationHead head;
  head.classes = k;
  head.dim = d;
  head.backbone = "builtin";
  head.step = 42;
  head.extra_metadata["eval"] = "{\"miou\": 12.5}";
  for (WeightNormConv* conv : {&head.theta_m, &head.theta_r}) {
    conv->v.resize(k * d);
    conv->g.resize(k);
    for (float& x : conv->v) x = normal(rng);
    for (float& x : conv->g) x = 0.5f + std::abs(normal(rng));
  }
  return head;
}

TEST(SegmentationHeadTest, RoundTrip) {
  const SegmentationHead head = RandomHead(5, 12, 1);
  const std::string bytes = SerializeHeadCheckpoint(head);
  auto back = ParseHeadCheckpoint(bytes, "builtin", 12);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->classes, 5);
  EXPECT_EQ(back->dim, 12);
  EXPECT_EQ(back->step, 42);
  EXPECT_EQ(back->theta_r.v, head.theta_r.v);
  EXPECT_EQ(back->theta_m.g, head.theta_m.g);
  EXPECT_EQ(back->extra_metadata.at("eval"), "{\"miou\": 12.5}");
}

TEST(SegmentationHeadTest, AcceptsPyTorchWeightNormShapes) {
  const SegmentationHead head = RandomHead(3, 4, 2);
  SafetensorsFile file;
  file.tensors["theta_m.v"] = MakeFloat32({3, 4, 1, 1}, head.theta_m.v);
  file.tensors["theta_m.g"] = MakeFloat32({3, 1, 1, 1}, head.theta_m.g);
  file.tensors["theta_r.v"] = MakeFloat32({3, 4, 1, 1}, head.theta_r.v);
  file.tensors["theta_r.g"] = MakeFloat32({3, 1, 1, 1}, head.theta_r.g);
  file.metadata["backbone"] = "builtin";
  auto parsed = ParseHeadCheckpoint(SerializeSafetensors(file), "builtin", 4);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->theta_r.v, head.theta_r.v);
}

TEST(SegmentationHeadTest, BadCheckpointsNameTheProblem) {
  const SegmentationHead head = RandomHead(4, 6, 3);
  const std::string good = SerializeHeadCheckpoint(head);
  EXPECT_THAT(
      std::string(
          ParseHeadCheckpoint(good, "dino_vits8", 6).status().message()),
      HasSubstr("backbone \"builtin\""));
  EXPECT_THAT(
      std::string(ParseHeadCheckpoint(good, "builtin", 384).status().message()),
      HasSubstr("feature dim is 6"));
  EXPECT_FALSE(
      ParseHeadCheckpoint(good.substr(0, good.size() - 10), "builtin", 6).ok());
  EXPECT_FALSE(ParseHeadCheckpoint("", "builtin", 6).ok());

  SegmentationHead nan = head;
  nan.theta_m.v[7] = NAN;
  EXPECT_THAT(
      std::string(ParseHeadCheckpoint(SerializeHeadCheckpoint(nan), "", 0)
                      .status()
                      .message()),
      HasSubstr("theta_m.v has a non-finite value at index 7"));
  SegmentationHead zero = head;
  std::fill(zero.theta_r.v.begin(), zero.theta_r.v.begin() + 6, 0.f);
  EXPECT_THAT(
      std::string(ParseHeadCheckpoint(SerializeHeadCheckpoint(zero), "", 0)
                      .status()
                      .message()),
      HasSubstr("theta_r.v row 0 is all zeros"));

  SafetensorsFile file = *ParseSafetensors(good);
  file.tensors.erase("theta_m.g");
  EXPECT_THAT(std::string(ParseHeadCheckpoint(SerializeSafetensors(file), "", 0)
                              .status()
                              .message()),
              HasSubstr("missing tensor theta_m.g"));
  file = *ParseSafetensors(good);
  file.tensors["theta_m.v"] = MakeFloat32({4, 5}, std::vector<float>(20, 1.f));
  EXPECT_THAT(std::string(ParseHeadCheckpoint(SerializeSafetensors(file), "", 0)
                              .status()
                              .message()),
              HasSubstr("theta_m.v has shape [4, 5], expected [4, 6]"));
  file = *ParseSafetensors(good);
  file.metadata["classes"] = "9";
  EXPECT_THAT(std::string(ParseHeadCheckpoint(SerializeSafetensors(file), "", 0)
                              .status()
                              .message()),
              HasSubstr("metadata says 9 classes"));
}

TEST(SegmentationHeadTest, ClassMapEqualsHeadOnUpsampledFeatures) {
  const SegmentationHead head = RandomHead(4, 8, 4);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  FeatureMap features{8, 5, 6, std::vector<float>(8 * 5 * 6)};
  for (float& x : features.data) x = normal(rng);
  const LabelMap fast =
      HeadClassMap(head, HeadKind::kSegmentation, features, 40, 48);
  // Reference: upsample the D-channel features, then apply the head.
  const std::vector<float> up =
      ResizeBilinearWindow(features.data.data(), 8, 5, 6, 40, 48, 0, 0, 40, 48);
  const FeatureMap up_features{8, 40, 48, up};
  const std::vector<float> scores =
      HeadScores(head, HeadKind::kSegmentation, up_features);
  int agree = 0;
  for (int p = 0; p < 40 * 48; ++p) {
    int best = 0;
    for (int c = 1; c < 4; ++c) {
      if (scores[c * 40 * 48 + p] > scores[best * 40 * 48 + p]) best = c;
    }
    agree += fast.labels[p] == best;
  }
  EXPECT_GE(agree, 40 * 48 - 2);  // only exact near-ties may differ
  // theta_M and theta_R are different heads.
  EXPECT_NE(
      HeadClassMap(head, HeadKind::kClusterProbe, features, 40, 48).labels,
      fast.labels);
}

TEST(SegmentationHeadTest, Sha256KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace primaps
