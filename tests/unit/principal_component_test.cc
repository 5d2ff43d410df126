#include "engine/principal_component.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace primaps {
namespace {

// Against a full LAPACK eigendecomposition (double precision), for spectra
// with a wide and a narrow gap between the first two components.
TEST(PrincipalComponentTest, MatchesFullEigendecomposition) {
  for (const double second : {0.2, 0.9}) {
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      SCOPED_TRACE(::testing::Message()
                   << "second/first " << second << " seed " << seed);
      std::mt19937 rng(seed);
      std::normal_distribution<float> normal;
      const int n = 300, d = 48;
      // Rows with per-direction scales 1, sqrt(second), 0.3, 0.3, ... in a
      // random orthonormal basis.
      at::Tensor basis =
          std::get<0>(at::linalg_qr(at::randn({d, d}, at::kDouble)));
      at::Tensor z = at::empty({n, d}, at::kDouble);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < d; ++j) {
          const double scale =
              j == 0 ? 1.0 : (j == 1 ? std::sqrt(second) : 0.3);
          z[i][j] = scale * normal(rng) + (j == 0 ? 2.0 : 0.0);
        }
      }
      const at::Tensor rows = at::mm(z, basis.t()).to(at::kFloat).contiguous();
      const std::vector<float> v =
          FirstPrincipalComponent(rows.data_ptr<float>(), n, d);
      const at::Tensor x = rows.to(at::kDouble);
      const at::Tensor c = x - x.mean(0, true);
      const at::Tensor want =
          std::get<1>(at::linalg_eigh(at::mm(c.t(), c))).select(1, d - 1);
      double dot = 0, norm = 0;
      for (int j = 0; j < d; ++j) {
        dot += v[j] * want[j].item<double>();
        norm += static_cast<double>(v[j]) * v[j];
      }
      EXPECT_NEAR(norm, 1.0, 1e-5);
      EXPECT_GT(std::abs(dot), 1.0 - 1e-6);
      // Sign rule: the largest |projection| is positive.
      const at::Tensor p = at::mv(
          c.to(at::kFloat), at::from_blob(const_cast<float*>(v.data()), {d}));
      const int64_t best = p.abs().argmax().item<int64_t>();
      EXPECT_GT(p[best].item<float>(), 0.f);
    }
  }
}

// At the benchmark's size (1600 features of 384 dimensions), large enough
// for the BLAS to use several threads: bit-identical at 1 and 2 threads.
TEST(PrincipalComponentTest, SameBitsAtAnyThreadCount) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  const int n = 1600, d = 384;
  std::vector<float> rows(static_cast<size_t>(n) * d);
  for (size_t i = 0; i < rows.size(); ++i)
    rows[i] = normal(rng) * (1.f + static_cast<float>(i % d) / d);
  const int saved = at::get_num_threads();
  std::vector<float> first;
  for (int threads : {1, 2, 1, 2}) {
    at::set_num_threads(threads);
    const std::vector<float> v = FirstPrincipalComponent(rows.data(), n, d);
    if (first.empty()) {
      first = v;
    } else {
      EXPECT_EQ(v, first) << threads << " threads";
    }
  }
  at::set_num_threads(saved);
}

}  // namespace
}  // namespace primaps
