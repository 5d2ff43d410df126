// The lattice CRF against an exact O(N^2) dense CRF on small images.
#include "engine/crf/dense_crf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "base/cpu_support.h"
#include "engine/crf/mean_field.h"
#include "engine/crf/permutohedral_lattice.h"
#include "engine/image/channel_maps.h"

namespace primaps {
namespace {

// Mean field with exact Gaussian kernels, otherwise as DenseCrfInference.
std::vector<float> ExactCrf(const RgbImage& image,
                            const std::vector<float>& probs, int L,
                            const DenseCrfOptions& o) {
  const int w = image.width, h = image.height, n = w * h;
  auto kernel_matrix = [&](bool bilateral) {
    std::vector<double> k(static_cast<size_t>(n) * n);
    for (int p = 0; p < n; ++p) {
      for (int q = 0; q < n; ++q) {
        const double sxy = bilateral ? o.bilateral_sxy : o.gaussian_sxy;
        const double dx = (p % w - q % w) / sxy, dy = (p / w - q / w) / sxy;
        double d2 = dx * dx + dy * dy;
        if (bilateral) {
          for (int c = 0; c < 3; ++c) {
            const double dc =
                (image.pixels[3 * p + c] - image.pixels[3 * q + c]) /
                double{o.bilateral_srgb};
            d2 += dc * dc;
          }
        }
        k[static_cast<size_t>(p) * n + q] = std::exp(-0.5 * d2);
      }
    }
    return k;
  };
  const std::vector<double> kg = kernel_matrix(false), kb = kernel_matrix(true);
  std::vector<double> ng(n), nb(n);
  for (int p = 0; p < n; ++p) {
    double sg = 0, sb = 0;
    for (int q = 0; q < n; ++q) {
      sg += kg[static_cast<size_t>(p) * n + q];
      sb += kb[static_cast<size_t>(p) * n + q];
    }
    ng[p] = 1 / std::sqrt(sg + 1e-20);
    nb[p] = 1 / std::sqrt(sb + 1e-20);
  }
  std::vector<double> unary(static_cast<size_t>(n) * L),
      q(static_cast<size_t>(n) * L);
  auto softmax = [&](std::vector<double>& e) {
    for (int p = 0; p < n; ++p) {
      double mx = -1e300, tot = 0;
      for (int l = 0; l < L; ++l) mx = std::max(mx, e[p * L + l]);
      for (int l = 0; l < L; ++l)
        tot += (e[p * L + l] = std::exp(e[p * L + l] - mx));
      for (int l = 0; l < L; ++l) e[p * L + l] /= tot;
    }
  };
  for (int p = 0; p < n; ++p) {
    for (int l = 0; l < L; ++l) {
      unary[p * L + l] = -std::log(
          std::min(std::max<double>(probs[l * n + p], o.prob_clip), 1.0));
      q[p * L + l] = -unary[p * L + l];
    }
  }
  softmax(q);
  for (int it = 0; it < o.iterations; ++it) {
    std::vector<double> e(q.size());
    for (int p = 0; p < n; ++p) {
      for (int l = 0; l < L; ++l) {
        double sg = 0, sb = 0;
        for (int r = 0; r < n; ++r) {
          sg += kg[static_cast<size_t>(p) * n + r] * ng[r] * q[r * L + l];
          sb += kb[static_cast<size_t>(p) * n + r] * nb[r] * q[r * L + l];
        }
        e[p * L + l] = -unary[p * L + l] + o.gaussian_weight * ng[p] * sg +
                       o.bilateral_weight * nb[p] * sb;
      }
    }
    softmax(e);
    q = e;
  }
  std::vector<float> out(q.size());
  for (int p = 0; p < n; ++p) {
    for (int l = 0; l < L; ++l)
      out[l * n + p] = static_cast<float>(q[p * L + l]);
  }
  return out;
}

// A w x h image of `regions` vertical bands with distinct colours and
// noise, and noisy probabilities that favour the right band 60% of the time.
void MakeScene(int w, int h, int labels, uint32_t seed, RgbImage* image,
               std::vector<float>* probs) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 6.f);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  image->width = w;
  image->height = h;
  image->pixels.resize(3 * w * h);
  probs->assign(static_cast<size_t>(labels) * w * h, 0.f);
  const int n = w * h;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      // Bands that wobble with y, so region borders are not straight.
      const int region = std::min(labels - 1, (x + (y % 5)) * labels / (w + 4));
      const int p = y * w + x;
      for (int c = 0; c < 3; ++c) {
        const float base =
            40.f + 170.f * (((region + 1) * (c + 2) * 37) % 7) / 6.f;
        image->pixels[3 * p + c] =
            static_cast<uint8_t>(std::clamp(base + noise(rng), 0.f, 255.f));
      }
      float total = 0;
      const int favoured =
          uniform(rng) < 0.6f
              ? region
              : static_cast<int>(uniform(rng) * labels) % labels;
      for (int l = 0; l < labels; ++l) {
        const float v = (l == favoured ? 2.f : 0.5f) + uniform(rng);
        (*probs)[l * n + p] = v;
        total += v;
      }
      for (int l = 0; l < labels; ++l) (*probs)[l * n + p] /= total;
    }
  }
}

struct CrfCase {
  int labels;
  uint32_t seed;
};

class CrfVersusExactTest : public ::testing::TestWithParam<CrfCase> {};

TEST_P(CrfVersusExactTest, AgreesWithExactDenseCrf) {
  const int w = 24, h = 24, L = GetParam().labels;
  RgbImage image;
  std::vector<float> probs;
  MakeScene(w, h, L, GetParam().seed, &image, &probs);
  DenseCrfOptions options;  // DESIGN.md defaults
  auto lattice_q = DenseCrfInference(image, probs, L, options);
  ASSERT_TRUE(lattice_q.ok()) << lattice_q.status();
  const std::vector<float> exact_q = ExactCrf(image, probs, L, options);
  const LabelMap a = ArgmaxLabels(*lattice_q, L, w, h);
  const LabelMap b = ArgmaxLabels(exact_q, L, w, h);
  int agree = 0;
  for (int p = 0; p < w * h; ++p) agree += a.labels[p] == b.labels[p];
  double diff = 0;
  for (size_t i = 0; i < exact_q.size(); ++i)
    diff += std::abs((*lattice_q)[i] - exact_q[i]);
  const double agreement = static_cast<double>(agree) / (w * h);
  const double mean_diff = diff / exact_q.size();
  RecordProperty("argmax_agreement", std::to_string(agreement));
  RecordProperty("mean_marginal_difference", std::to_string(mean_diff));
  std::printf(
      "labels %d: argmax agreement %.4f, mean |Q_lattice - Q_exact| %.4f\n", L,
      agreement, mean_diff);
  EXPECT_GE(agreement, 0.97);
  EXPECT_LE(mean_diff, 0.03);
  // The CRF must also do something: it changes the noisy initial argmax.
  const LabelMap initial = ArgmaxLabels(probs, L, w, h);
  int changed = 0;
  for (int p = 0; p < w * h; ++p) changed += initial.labels[p] != a.labels[p];
  EXPECT_GT(changed, 10);
}

INSTANTIATE_TEST_SUITE_P(Labels, CrfVersusExactTest,
                         ::testing::Values(CrfCase{3, 1}, CrfCase{4, 2},
                                           CrfCase{5, 3}, CrfCase{6, 4}),
                         [](const ::testing::TestParamInfo<CrfCase>& info) {
                           return std::to_string(info.param.labels) + "_labels";
                         });

TEST(PermutohedralLatticeTest, ApproximatesGaussianBlurOfConstant) {
  // A constant signal on a grid with sxy=3: the filtered value at an inner
  // pixel approximates sum_q exp(-|x_p-x_q|^2/(2*9)) = 2*pi*9 ~ 56.5, up to
  // the lattice's constant factor; it must at least be smooth and symmetric.
  const int w = 30, h = 30;
  std::vector<float> features(2 * w * h);
  for (int i = 0; i < w * h; ++i) {
    features[2 * i] = (i % w) / 3.f;
    features[2 * i + 1] = (i / w) / 3.f;
  }
  PermutohedralLattice lattice(features.data(), w * h, 2);
  std::vector<float> ones(w * h, 1.f), out(w * h), workspace;
  lattice.Filter(ones.data(), 1, out.data(), &workspace);
  const float centre = out[15 * w + 15];
  EXPECT_GT(centre, 0.f);
  EXPECT_NEAR(out[15 * w + 14] / centre, 1.f, 0.1f);
  EXPECT_LT(out[0], centre);  // corners see fewer neighbours
  EXPECT_NEAR(out[0], out[w * h - 1], 0.2f * out[0]);
}

// Rows of any width, the fixed widths compiled on registers and the others
// as plain loops, give each channel the same bits as filtering it alone:
// the arithmetic per channel does not depend on the row width.
TEST(PermutohedralLatticeTest, EveryRowWidthGivesTheSameBitsPerChannel) {
  const int w = 23, h = 17, n = w * h;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  std::vector<float> features(5 * n);
  for (int i = 0; i < n; ++i) {
    features[5 * i] = (i % w) / 7.f;
    features[5 * i + 1] = (i / w) / 7.f;
    for (int c = 2; c < 5; ++c) features[5 * i + c] = 4.f * uniform(rng);
  }
  std::vector<float> scale(n);
  for (float& s : scale) s = 0.5f + uniform(rng);
  for (const int dim : {2, 5, 3}) {
    // Features of `dim` dimensions: the first `dim` of each row.
    std::vector<float> f(static_cast<size_t>(dim) * n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < dim; ++j) f[dim * i + j] = features[5 * i + j];
    }
    const PermutohedralLattice lattice(f.data(), n, dim);
    PermutohedralLattice::Scaling scaling;
    scaling.in_scale = scale.data();
    scaling.out_scale = scale.data();
    scaling.out_weight = 3.f;
    for (const int channels : {1, 4, 8, 13, 20, 37}) {
      SCOPED_TRACE(::testing::Message()
                   << "dim " << dim << ", " << channels << " channels");
      std::vector<float> in(static_cast<size_t>(n) * channels);
      for (float& v : in) v = uniform(rng);
      std::vector<float> out(in.size()), workspace;
      lattice.FilterScaled(in.data(), channels, out.data(), scaling,
                           &workspace);
      for (int c = 0; c < channels; ++c) {
        std::vector<float> one(n), one_out(n);
        for (int i = 0; i < n; ++i) one[i] = in[i * channels + c];
        lattice.FilterScaled(one.data(), 1, one_out.data(), scaling,
                             &workspace);
        for (int i = 0; i < n; ++i)
          ASSERT_EQ(out[i * channels + c], one_out[i]) << "channel " << c;
      }
    }
  }
}

// Keys packed into 64-bit integers (neighbours found by sorting) and keys
// of shorts (neighbours by hash lookups) give the same lattice, so the same
// filtered bits; with features spread so wide that the keys do not pack,
// both are keys of shorts.
TEST(PermutohedralLatticeTest, PackedKeysEqualShortKeys) {
  const int n = 3000;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  using Packing = PermutohedralLattice::KeyPacking;
  for (const float spread : {3.f, 40.f, 1500.f}) {
    for (const int dim : {1, 2, 3, 5, 8}) {
      SCOPED_TRACE(::testing::Message()
                   << "dim " << dim << ", spread " << spread);
      std::vector<float> features(static_cast<size_t>(n) * dim);
      for (float& f : features) f = spread * uniform(rng);
      const PermutohedralLattice sorted(features.data(), n, dim, nullptr,
                                        Packing::kWhenTheyFit);
      const PermutohedralLattice hashed(features.data(), n, dim, nullptr,
                                        Packing::kNever);
      ASSERT_EQ(sorted.num_vertices(), hashed.num_vertices());
      std::vector<float> in(static_cast<size_t>(n) * 4);
      for (float& v : in) v = uniform(rng);
      std::vector<float> out_sorted(in.size()), out_hashed(in.size()),
          workspace;
      sorted.Filter(in.data(), 4, out_sorted.data(), &workspace);
      hashed.Filter(in.data(), 4, out_hashed.data(), &workspace);
      EXPECT_EQ(out_sorted, out_hashed);
    }
  }
}

// The fused mean field (row widths 4 to 32) and the unfused one (other
// widths, here 36) give each label the same bits: per label, the arithmetic
// does not depend on the row width or on how the passes are arranged.
TEST(MeanFieldTest, FusedAndUnfusedGiveTheSameBits) {
  const int w = 29, h = 21, n = w * h;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  std::vector<float> position(2 * n), colour(5 * n);
  for (int i = 0; i < n; ++i) {
    position[2 * i] = static_cast<float>(i % w);
    position[2 * i + 1] = static_cast<float>(i / w);
    colour[5 * i] = (i % w) / 9.f;
    colour[5 * i + 1] = (i / w) / 9.f;
    for (int c = 2; c < 5; ++c) colour[5 * i + c] = 6.f * uniform(rng);
  }
  const PermutohedralLattice gaussian_lattice(position.data(), n, 2);
  const PermutohedralLattice bilateral_lattice(colour.data(), n, 5);
  auto norm = [n](const PermutohedralLattice& lattice) {
    std::vector<float> ones(n, 1.f), out(n), workspace;
    lattice.Filter(ones.data(), 1, out.data(), &workspace);
    for (float& v : out) v = 1.f / std::sqrt(v + 1e-20f);
    return out;
  };
  const std::vector<float> gaussian_norm = norm(gaussian_lattice),
                           bilateral_norm = norm(bilateral_lattice);
  const MeanFieldKernel gaussian{&gaussian_lattice, gaussian_norm.data(), 3.f};
  const MeanFieldKernel bilateral{&bilateral_lattice, bilateral_norm.data(),
                                  4.f};
  for (const int labels : {2, 5, 8, 11, 19, 30}) {
    SCOPED_TRACE(::testing::Message() << labels << " labels");
    std::vector<float> log_probs(static_cast<size_t>(n) * labels);
    for (float& v : log_probs) v = std::log(0.01f + uniform(rng));
    auto run = [&](int stride) {
      std::vector<float> neg_unary(static_cast<size_t>(n) * stride, 0.f), q;
      for (int p = 0; p < n; ++p) {
        for (int l = 0; l < labels; ++l)
          neg_unary[p * stride + l] = log_probs[p * labels + l];
      }
      EXPECT_TRUE(
          MeanField(gaussian, bilateral, neg_unary, 5, labels, stride, &q)
              .ok());
      std::vector<float> out(log_probs.size());
      for (int p = 0; p < n; ++p) {
        for (int l = 0; l < labels; ++l)
          out[p * labels + l] = q[p * stride + l];
      }
      return out;
    };
    const int fused_stride = labels <= 8    ? (labels + 3) / 4 * 4
                             : labels <= 16 ? 16
                                            : 32;
    const std::vector<float> fused = run(fused_stride), unfused = run(36);
    for (size_t i = 0; i < fused.size(); ++i)
      ASSERT_EQ(fused[i], unfused[i]) << "at " << i;
  }
}

// The machine that runs the tests can run this build's kernels (else every
// CRF test here would die on an illegal instruction; this says why).
TEST(CpuSupportTest, ThisMachineRunsThisBuild) {
  const absl::Status status = CheckCpuSupport();
  EXPECT_TRUE(status.ok()) << status;
}

TEST(DenseCrfTest, RefusesBadInput) {
  RgbImage image{4, 4, std::vector<uint8_t>(48, 0)};
  EXPECT_FALSE(DenseCrfInference(image, std::vector<float>(10), 2).ok());
  EXPECT_FALSE(DenseCrfInference(RgbImage{}, {}, 2).ok());
  DenseCrfOptions bad;
  bad.bilateral_srgb = 0;
  EXPECT_FALSE(
      DenseCrfInference(image, std::vector<float>(32, 0.5f), 2, bad).ok());
}

TEST(DenseCrfTest, ZeroIterationsIsSoftmaxOfLogClippedProbs) {
  RgbImage image{2, 1, {0, 0, 0, 255, 255, 255}};
  std::vector<float> probs = {0.7f, 0.f, 0.3f, 1.f};  // label-major
  DenseCrfOptions options;
  options.iterations = 0;
  auto q = DenseCrfInference(image, probs, 2, options);
  ASSERT_TRUE(q.ok());
  EXPECT_NEAR((*q)[0], 0.7f, 1e-6);
  EXPECT_NEAR((*q)[1], 1e-5f / (1.f + 1e-5f), 1e-7);
}

}  // namespace
}  // namespace primaps
