// Checks on the LibTorch runtime the install script sets up.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "engine/vit/vit_backbone.h"

namespace primaps {
namespace {

// Debian's LibTorch calls the system BLAS (libblas.so.3); without
// libopenblas0-openmp that resolves to the reference BLAS, ~30x slower.
TEST(TorchRuntimeTest, MatrixProductsRunOnOpenBlas) {
  const at::Tensor a = at::ones({64, 64});
  EXPECT_EQ(at::mm(a, a)[0][0].item<float>(), 64.f);
  std::ifstream maps("/proc/self/maps");
  std::string line, blas_lines;
  bool openblas = false;
  while (std::getline(maps, line)) {
    if (line.find("blas") != std::string::npos) blas_lines += line + "\n";
    if (line.find("openblas") != std::string::npos) openblas = true;
  }
  EXPECT_TRUE(openblas)
      << "no OpenBLAS mapped; BLAS libraries in this process:\n"
      << blas_lines;
}

TEST(TorchRuntimeTest, ThreadCountComesFromTheFlag) {
  SetTorchThreads(2);
  EXPECT_EQ(at::get_num_threads(), 2);
  SetTorchThreads(1);
  EXPECT_EQ(at::get_num_threads(), 1);
  SetTorchThreads(0);  // keeps the current value
  EXPECT_EQ(at::get_num_threads(), 1);
}

}  // namespace
}  // namespace primaps
