// ViT features against tests/golden/make_golden.py within 1e-4, for DINO and
// DINOv2 (with and without registers), square and non-square inputs, every
// checkpoint format; plus the backbone's refusals.
#include "engine/vit/vit_backbone.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "base/cpu_support.h"
#include "engine/backbone/backbone_weights.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/vit/tensor_cache.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::testing::HasSubstr;

constexpr float kTolerance = 1e-4f;

VitConfig Tiny(const char* name) {
  VitConfig c = *VitConfigByName(name);
  c.dim = 64;
  c.depth = 2;
  c.heads = 4;
  c.mlp_hidden = 256;
  return c;
}

struct GoldenCase {
  const char* model;    // fixture prefix
  const char* arch;     // architecture family
  const char* weights;  // weights file
};

std::unique_ptr<Backbone> Load(const GoldenCase& c, int block = -1,
                               int chunk = 256) {
  VitBackboneOptions options;
  options.config = Tiny(c.arch);
  options.block = block;
  options.attention_chunk = chunk;
  auto backbone = LoadVitBackbone(testing::FixturePath(c.weights), options);
  EXPECT_TRUE(backbone.ok()) << backbone.status();
  return backbone.ok() ? *std::move(backbone) : nullptr;
}

NormalizedImage ImageFrom(const TensorRecord& input) {
  NormalizedImage image;
  image.height = image.valid_height = static_cast<int>(input.shape[2]);
  image.width = image.valid_width = static_cast<int>(input.shape[3]);
  image.data = Float32Values(input);
  return image;
}

float MaxAbsDiff(const FeatureMap& got, const TensorRecord& want) {
  EXPECT_EQ(got.dim, want.shape[1]);
  EXPECT_EQ(got.height, want.shape[2]);
  EXPECT_EQ(got.width, want.shape[3]);
  const std::vector<float> expected = Float32Values(want);
  if (expected.size() != got.data.size()) return INFINITY;
  float worst = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, std::abs(expected[i] - got.data[i]));
  return worst;
}

// Runs `check(features, want)` for every golden input ("NAME.input") with
// the backbone's features and the golden "NAME.features"; returns how many.
template <typename Check>
int ForEachGoldenInput(const SafetensorsFile& golden, Backbone* backbone,
                       Check&& check) {
  int checked = 0;
  for (const auto& [name, record] : golden.tensors) {
    if (name.size() < 6 || name.substr(name.size() - 6) != ".input") continue;
    const std::string input_name = name.substr(0, name.size() - 6);
    SCOPED_TRACE(input_name);
    const NormalizedImage image = ImageFrom(record);
    auto features = backbone->Extract({&image});
    EXPECT_TRUE(features.ok()) << features.status();
    if (!features.ok()) continue;
    check((*features)[0], golden.tensors.at(input_name + ".features"));
    ++checked;
  }
  return checked;
}

class VitGoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(VitGoldenTest, FeaturesMatchReference) {
  auto golden = ParseSafetensors(testing::ReadBinary(testing::FixturePath(
      std::string(GetParam().model) + "_golden.safetensors")));
  ASSERT_TRUE(golden.ok()) << golden.status();
  auto backbone = Load(GetParam());
  ASSERT_NE(backbone, nullptr);
  const int checked =
      ForEachGoldenInput(*golden, backbone.get(),
                         [](const FeatureMap& got, const TensorRecord& want) {
                           EXPECT_LT(MaxAbsDiff(got, want), kTolerance);
                         });
  EXPECT_GE(checked, 3);
}

TEST_P(VitGoldenTest, EarlierBlockMatchesReference) {
  auto golden = ParseSafetensors(testing::ReadBinary(testing::FixturePath(
      std::string(GetParam().model) + "_golden.safetensors")));
  ASSERT_TRUE(golden.ok());
  auto backbone = Load(GetParam(), /*block=*/0);
  ASSERT_NE(backbone, nullptr);
  const NormalizedImage image = ImageFrom(golden->tensors.at("square.input"));
  auto features = backbone->Extract({&image});
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_LT(MaxAbsDiff((*features)[0], golden->tensors.at("square.block0")),
            kTolerance);
}

TEST_P(VitGoldenTest, BatchAndChunkingDoNotChangeResults) {
  auto golden = ParseSafetensors(testing::ReadBinary(testing::FixturePath(
      std::string(GetParam().model) + "_golden.safetensors")));
  ASSERT_TRUE(golden.ok());
  const NormalizedImage image =
      ImageFrom(golden->tensors.at("nonsquare.input"));
  NormalizedImage flipped = image;
  std::reverse(flipped.data.begin(), flipped.data.end());
  auto whole = Load(GetParam(), -1, /*chunk=*/0);
  auto chunked = Load(GetParam(), -1, /*chunk=*/3);
  auto one = whole->Extract({&image});
  auto two = chunked->Extract({&flipped, &image});
  ASSERT_TRUE(one.ok() && two.ok());
  float worst = 0;
  for (size_t i = 0; i < (*one)[0].data.size(); ++i) {
    worst = std::max(worst, std::abs((*one)[0].data[i] - (*two)[1].data[i]));
  }
  EXPECT_LT(worst, 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(
    Models, VitGoldenTest,
    ::testing::Values(
        GoldenCase{"dino", "dino_vits8", "dino_tiny.pth"},
        GoldenCase{"dino", "dino_vits8", "dino_tiny_hf.safetensors"},
        GoldenCase{"dino", "dino_vits8", "dino_tiny_train.pth"},
        GoldenCase{"dinov2", "dinov2_vits14", "dinov2_tiny.pth"},
        GoldenCase{"dinov2", "dinov2_vits14", "dinov2_tiny_hf.safetensors"},
        GoldenCase{"dinov2_reg", "dinov2_vits14_reg", "dinov2_reg_tiny.pth"},
        GoldenCase{"dinov2_reg", "dinov2_vits14_reg",
                   "dinov2_reg_tiny.safetensors"}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) {
      std::string name = info.param.weights;
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST(VitBackboneTest, HalfPrecisionCheckpointGivesCloseFeatures) {
  auto golden = ParseSafetensors(
      testing::ReadBinary(testing::FixturePath("dino_golden.safetensors")));
  ASSERT_TRUE(golden.ok());
  auto backbone = Load({"dino", "dino_vits8", "dino_tiny_fp16.pth"});
  ASSERT_NE(backbone, nullptr);
  const NormalizedImage image = ImageFrom(golden->tensors.at("square.input"));
  auto features = backbone->Extract({&image});
  ASSERT_TRUE(features.ok());
  // fp16 weights, fp32 compute: close to the fp32 reference, not equal.
  const float diff =
      MaxAbsDiff((*features)[0], golden->tensors.at("square.features"));
  EXPECT_LT(diff, 0.05f);
  EXPECT_GT(diff, 0.f);
}

TEST(VitBackboneTest, DinoV2RefusesNonPatchMultiples) {
  auto backbone = Load({"dinov2", "dinov2_vits14", "dinov2_tiny.pth"});
  ASSERT_NE(backbone, nullptr);
  NormalizedImage image;
  image.height = image.width = 50;
  image.data.assign(3 * 50 * 50, 0.f);
  auto features = backbone->Extract({&image});
  EXPECT_EQ(features.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(features.status().message()),
              HasSubstr("patch size 14"));
}

TEST(VitBackboneTest, MixedSizesAndTinyImagesAreRefused) {
  auto backbone = Load({"dino", "dino_vits8", "dino_tiny.pth"});
  ASSERT_NE(backbone, nullptr);
  NormalizedImage a, b, tiny;
  a.height = a.width = 16;
  a.data.assign(3 * 16 * 16, 0.f);
  b.height = 16;
  b.width = 24;
  b.data.assign(3 * 16 * 24, 0.f);
  tiny.height = tiny.width = 4;
  tiny.data.assign(3 * 4 * 4, 0.f);
  EXPECT_EQ(backbone->Extract({&a, &b}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backbone->Extract({&tiny}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(backbone->Extract({}).ok());
}

// bf16 on the CPU (oneDNN's products): the golden features within 2%
// relative L2 error, and the backbone says which precision it runs; "auto"
// picks bf16 exactly where the CPU has native bf16.
TEST(VitBackboneTest, Bf16OnCpuIsCloseToFp32AndNamed) {
  auto golden = ParseSafetensors(
      testing::ReadBinary(testing::FixturePath("dino_golden.safetensors")));
  ASSERT_TRUE(golden.ok()) << golden.status();
  VitBackboneOptions options;
  options.config = Tiny("dino_vits8");
  options.precision = "bf16";
  auto bf16 = LoadVitBackbone(testing::FixturePath("dino_tiny.pth"), options);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_STREQ((*bf16)->precision(), "bf16");
  const int checked = ForEachGoldenInput(
      *golden, bf16->get(), [](const FeatureMap& got, const TensorRecord& r) {
        const std::vector<float> want = Float32Values(r);
        ASSERT_EQ(want.size(), got.data.size());
        double error = 0, norm = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          error += std::pow(got.data[i] - want[i], 2);
          norm += std::pow(want[i], 2);
        }
        EXPECT_LT(std::sqrt(error / norm), 0.02);
        EXPECT_GT(std::sqrt(error / norm), 0.0) << "bf16 gave fp32's bits";
      });
  EXPECT_GE(checked, 3);
  options.precision = "auto";
  auto automatic =
      LoadVitBackbone(testing::FixturePath("dino_tiny.pth"), options);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_STREQ((*automatic)->precision(), CpuHasNativeBf16() ? "bf16" : "fp32");
}

// A CPU backbone makes LibTorch allocate large tensors from the cache:
// a freed block comes back for the next tensor of its size, and the cache
// gives its blocks back on request.
TEST(VitBackboneTest, LargeCpuTensorsReuseCachedBlocks) {
  auto backbone = Load({"dino", "dino_vits8", "dino_tiny.pth"});
  ASSERT_NE(backbone, nullptr);
  ReleaseCachedCpuBlocks();
  void* first = nullptr;
  {
    at::Tensor t = at::empty({1 << 20}, at::kFloat);  // 4 MB
    first = t.data_ptr();
    t.fill_(1.f);
  }
  EXPECT_EQ(CachedCpuBytes(), size_t{4} << 20);
  {
    at::Tensor t = at::ones({1 << 20}, at::kFloat);
    EXPECT_EQ(t.data_ptr(), first);
    EXPECT_EQ(t.sum().item<float>(), float{1 << 20});
    EXPECT_EQ(CachedCpuBytes(), 0u);
  }
  at::Tensor small = at::ones({100}, at::kFloat);  // not cached
  EXPECT_EQ(small.sum().item<float>(), 100.f);
  ReleaseCachedCpuBlocks();
  EXPECT_EQ(CachedCpuBytes(), 0u);
}

TEST(VitBackboneTest, OptionsAreValidated) {
  VitBackboneOptions options;
  options.config = Tiny("dino_vits8");
  options.precision = "fp16";
  EXPECT_THAT(std::string(LoadVitBackbone(testing::FixturePath("dino_tiny.pth"),
                                          options)
                              .status()
                              .message()),
              HasSubstr("needs a CUDA device"));
  options.precision = "fp64";
  EXPECT_THAT(std::string(LoadVitBackbone(testing::FixturePath("dino_tiny.pth"),
                                          options)
                              .status()
                              .message()),
              HasSubstr("expected fp32, bf16, fp16 or auto"));
  options.precision = "fp32";
  options.block = 5;
  EXPECT_EQ(LoadVitBackbone(testing::FixturePath("dino_tiny.pth"), options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  options.block = -1;
  options.device = "tpu";
  EXPECT_EQ(LoadVitBackbone(testing::FixturePath("dino_tiny.pth"), options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  options.device = "cpu";
  options.config = Tiny("dinov2_vits14");
  auto wrong = LoadVitBackbone(testing::FixturePath("dino_tiny.pth"), options);
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr("dino_tiny.pth"));
}

}  // namespace
}  // namespace primaps
