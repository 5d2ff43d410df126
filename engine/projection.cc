#include "engine/projection.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/segmentation_head.h"

// The reference BLAS interface (column-major): C = alpha * op(A) op(B) +
// beta * C.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m,
                       const int* n, const int* k, const float* alpha,
                       const float* a, const int* lda, const float* b,
                       const int* ldb, const float* beta, float* c,
                       const int* ldc);

namespace primaps {
namespace {

// out (rows x n, row-major) = w (rows x k, row-major) * x (k x n,
// row-major) + bias per row. Row-major x is column-major x^T (n x k), so
// this is out^T = x^T w^T in column-major terms: no transposes.
void Conv1x1(const std::vector<float>& w, const std::vector<float>& bias,
             int rows, int k, const float* x, int n, float* out) {
  for (int r = 0; r < rows; ++r)
    std::fill(out + static_cast<size_t>(r) * n,
              out + static_cast<size_t>(r + 1) * n, bias[r]);
  const float one = 1.f;
  const int ldx = n, ldw = k, ldo = n;
  // One BLAS thread, as principal_component.cc: the result must not depend
  // on the thread count, and the server runs images in parallel already.
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  sgemm_("N", "N", &n, &rows, &k, &one, x, &ldx, w.data(), &ldw, &one, out,
         &ldo);
  omp_set_num_threads(saved_threads);
}

absl::Status CheckSize(const char* what, const std::vector<float>& v,
                       size_t want) {
  if (v.size() == want) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "projection ", what, " holds ", v.size(), " values; expected ", want));
}

}  // namespace

absl::Status ValidateProjection(const Projection& p) {
  if (p.in_dim < 1 || p.out_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "projection of ", p.in_dim, " to ", p.out_dim, " channels"));
  }
  const size_t d = p.in_dim, o = p.out_dim;
  for (const auto& [what, v, want] :
       {std::make_tuple("linear weight", &p.linear_w, o * d),
        std::make_tuple("linear bias", &p.linear_b, o),
        std::make_tuple("hidden weight", &p.hidden_w, d * d),
        std::make_tuple("hidden bias", &p.hidden_b, d),
        std::make_tuple("output weight", &p.out_w, o * d),
        std::make_tuple("output bias", &p.out_b, o)}) {
    if (auto status = CheckSize(what, *v, want); !status.ok()) return status;
  }
  return absl::OkStatus();
}

std::string ProjectionDigest(const Projection& p) {
  std::string bytes;
  for (const std::vector<float>* v : {&p.linear_w, &p.linear_b, &p.hidden_w,
                                      &p.hidden_b, &p.out_w, &p.out_b}) {
    bytes.append(reinterpret_cast<const char*>(v->data()), v->size() * 4);
  }
  return Sha256Hex(bytes);
}

absl::StatusOr<FeatureMap> ApplyProjection(const Projection& p,
                                           const FeatureMap& f) {
  if (f.dim != p.in_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("the projection reads ", p.in_dim,
                     " channels; the features have ", f.dim));
  }
  const int n = f.height * f.width;
  FeatureMap code{p.out_dim, f.height, f.width,
                  std::vector<float>(static_cast<size_t>(p.out_dim) * n)};
  Conv1x1(p.linear_w, p.linear_b, p.out_dim, p.in_dim, f.data.data(), n,
          code.data.data());
  std::vector<float> hidden(static_cast<size_t>(p.in_dim) * n);
  Conv1x1(p.hidden_w, p.hidden_b, p.in_dim, p.in_dim, f.data.data(), n,
          hidden.data());
  for (float& v : hidden) v = std::max(v, 0.f);
  std::vector<float> second(static_cast<size_t>(p.out_dim) * n);
  Conv1x1(p.out_w, p.out_b, p.out_dim, p.in_dim, hidden.data(), n,
          second.data());
  for (size_t i = 0; i < code.data.size(); ++i) code.data[i] += second[i];
  return code;
}

}  // namespace primaps
