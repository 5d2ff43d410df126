#include "engine/principal_component.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>

namespace primaps {

std::vector<float> FirstPrincipalComponent(const float* rows, int64_t count,
                                           int dim) {
  c10::InferenceMode guard;
  const at::Tensor x =
      at::from_blob(const_cast<float*>(rows), {count, dim}, at::kFloat);
  const at::Tensor centered = x - x.mean(0, /*keepdim=*/true);
  // Covariance up to a positive factor, which changes no eigenvector.
  const at::Tensor cov = at::mm(centered.t(), centered);
  // eigh returns eigenvalues in ascending order: the last column is the
  // leading eigenvector.
  const at::Tensor v =
      std::get<1>(at::linalg_eigh(cov)).select(1, dim - 1).contiguous();
  const at::Tensor projections = at::mv(centered, v).contiguous();
  const float* p = projections.data_ptr<float>();
  int64_t best = 0;
  for (int64_t i = 1; i < count; ++i) {
    if (std::abs(p[i]) > std::abs(p[best])) best = i;
  }
  std::vector<float> out(v.data_ptr<float>(), v.data_ptr<float>() + dim);
  if (p[best] < 0) {
    for (float& e : out) e = -e;
  }
  return out;
}

}  // namespace primaps
