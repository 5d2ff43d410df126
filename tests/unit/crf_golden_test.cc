// The lattice filter and the CRF against tests/golden/make_golden.py, a
// point-by-point Python statement of the reference lattice (DESIGN.md
// section 2) in float32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/tensor_record.h"
#include "engine/crf/dense_crf.h"
#include "engine/crf/permutohedral_lattice.h"
#include "engine/image/channel_maps.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

class CrfGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = ParseSafetensors(
        testing::ReadBinary(testing::FixturePath("crf_golden.safetensors")));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    golden_ = std::move(parsed->tensors);
    const TensorRecord& image = golden_.at("image");  // H x W x 3, uint8
    image_.height = static_cast<int>(image.shape[0]);
    image_.width = static_cast<int>(image.shape[1]);
    image_.pixels.assign(image.data.begin(), image.data.end());
  }

  // Per pixel: x/sxy, y/sxy and, when srgb > 0, r/srgb, g/srgb, b/srgb.
  std::vector<float> Features(float sxy, float srgb) const {
    const int dim = srgb > 0 ? 5 : 2;
    const int n = image_.width * image_.height;
    std::vector<float> f(static_cast<size_t>(n) * dim);
    for (int p = 0; p < n; ++p) {
      f[p * dim] = (p % image_.width) / sxy;
      f[p * dim + 1] = (p / image_.width) / sxy;
      for (int c = 0; srgb > 0 && c < 3; ++c)
        f[p * dim + 2 + c] = image_.pixels[3 * p + c] / srgb;
    }
    return f;
  }

  std::vector<float> Values(const std::string& name) const {
    return Float32Values(golden_.at(name));
  }

  TensorMap golden_;
  RgbImage image_;
};

// Largest |a - b| relative to the largest |b|.
float RelativeMaxDiff(const std::vector<float>& a,
                      const std::vector<float>& b) {
  float diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / scale;
}

TEST_F(CrfGoldenTest, LatticeFilterMatchesReferenceStatement) {
  const std::vector<float> values = Values("values");  // N x 3
  const int n = image_.width * image_.height;
  struct Case {
    const char* name;
    float sxy, srgb;
  };
  for (const Case& c :
       {Case{"position.out", 1, 0}, Case{"bilateral.out", 67, 3},
        Case{"bilateral_fine.out", 3, 10}}) {
    const std::vector<float> features = Features(c.sxy, c.srgb);
    const PermutohedralLattice lattice(features.data(), n, c.srgb > 0 ? 5 : 2);
    std::vector<float> out(values.size()), workspace;
    lattice.Filter(values.data(), 3, out.data(), &workspace);
    const std::vector<float> want = Values(c.name);
    ASSERT_EQ(out.size(), want.size());
    EXPECT_LT(RelativeMaxDiff(out, want), 1e-6f) << c.name;
  }
}

TEST_F(CrfGoldenTest, MeanFieldMatchesReferenceStatement) {
  const std::vector<float> probs = Values("probs");  // 4 x H x W
  DenseCrfOptions fine;
  fine.bilateral_sxy = 3;
  fine.bilateral_srgb = 10;
  for (const auto& [name, options] :
       {std::make_pair("crf.q", DenseCrfOptions{}),
        std::make_pair("crf_fine.q", fine)}) {
    auto q = DenseCrfInference(image_, probs, 4, options);
    ASSERT_TRUE(q.ok()) << q.status();
    const std::vector<float> want = Values(name);
    float max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i)
      max_diff = std::max(max_diff, std::fabs((*q)[i] - want[i]));
    // Marginals: only the exp differs (a polynomial within 2 ulp of libm's).
    EXPECT_LT(max_diff, 1e-5f) << name;
    EXPECT_EQ(ArgmaxLabels(*q, 4, image_.width, image_.height).labels,
              ArgmaxLabels(want, 4, image_.width, image_.height).labels)
        << name;
  }
}

}  // namespace
}  // namespace primaps
