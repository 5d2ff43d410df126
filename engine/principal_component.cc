#include "engine/principal_component.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

// The reference BLAS interface (column-major), from the system BLAS that
// LibTorch also uses (OpenBLAS here): C = alpha * A * A^T + beta * C on one
// triangle of C.
extern "C" void ssyrk_(const char* uplo, const char* trans, const int* n,
                       const int* k, const float* alpha, const float* a,
                       const int* lda, const float* beta, float* c,
                       const int* ldc);

// LAPACK: all eigenvalues (ascending) and eigenvectors (columns of z) of a
// symmetric tridiagonal matrix.
extern "C" void dstev_(const char* jobz, const int* n, double* d, double* e,
                       double* z, const int* ldz, double* work, int* info);

namespace primaps {
namespace {

// X^T X for the row-major count x dim matrix `x`, in double, both triangles.
// A symmetric rank-k update computes one triangle: half the work of a
// general product. Row-major X is column-major X^T (dim x count), so this is
// syrk of X^T with no transpose.
std::vector<double> Gram(const float* x, int64_t count, int dim) {
  std::vector<float> upper(static_cast<size_t>(dim) * dim, 0.f);
  const int n = dim, k = static_cast<int>(count), lda = dim, ldc = dim;
  const float one = 1.f, zero = 0.f;
  {
    // One BLAS thread: a threaded ssyrk splits the sums over k as well on
    // some CPUs (OpenBLAS 0.3.21 on AMD Zen 5 gives other bits at 2
    // threads), and the result must not depend on the thread count. The
    // OpenMP build of OpenBLAS sizes its team from the calling thread's
    // OpenMP setting at each call, so this changes no other thread's.
    const int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    ssyrk_("U", "N", &n, &k, &one, x, &lda, &zero, upper.data(), &ldc);
    omp_set_num_threads(saved_threads);
  }
  // Column-major upper triangle: element (i, j), i <= j, at j * dim + i.
  std::vector<double> a(upper.size());
  for (int j = 0; j < dim; ++j) {
    for (int i = 0; i <= j; ++i) {
      const double v = upper[static_cast<size_t>(j) * dim + i];
      a[static_cast<size_t>(i) * dim + j] = v;
      a[static_cast<size_t>(j) * dim + i] = v;
    }
  }
  return a;
}

// Largest eigenpair of the symmetric tridiagonal matrix with diagonal
// `alpha` and off-diagonal `beta` (k x k, k = alpha.size()), by LAPACK's
// tridiagonal QL/QR solver (called once per Lanczos step, so without the
// overhead of a general dense eigensolver).
void TopTridiagonalEigenpair(const std::vector<double>& alpha,
                             const std::vector<double>& beta, double* theta,
                             std::vector<double>* s) {
  const int k = static_cast<int>(alpha.size());
  std::vector<double> diagonal = alpha, off(beta.begin(), beta.end());
  off.resize(std::max(k - 1, 1));
  std::vector<double> vectors(static_cast<size_t>(k) * k),
      work(std::max(2 * k - 2, 1));
  int info = 0;
  dstev_("V", &k, diagonal.data(), off.data(), vectors.data(), &k, work.data(),
         &info);
  // info != 0 (no convergence) does not happen for k <= dim in practice;
  // the last pair computed is still the best estimate available.
  *theta = diagonal[k - 1];  // eigenvalues ascend
  s->assign(vectors.begin() + static_cast<size_t>(k - 1) * k, vectors.end());
}

// The leading eigenvector of the symmetric positive semi-definite d x d
// matrix `a` (row-major), by Lanczos iteration with full
// reorthogonalization, stopped when the Ritz residual |A v - theta v| falls
// below 1e-10 * theta. Deterministic: the start vector is the unit vector of
// the largest diagonal entry (the coordinate of largest variance).
std::vector<double> LeadingEigenvector(const std::vector<double>& a, int d) {
  // y = A x, as y += x_j * (row j) for j = 0, 1, ...: A is symmetric, so
  // each y_i is the same sum in the same order as a row-times-x dot
  // product, but the loop over i vectorizes and carries no dependency from
  // one add to the next (a dot product waits out the add latency per term).
  auto matvec = [&](const std::vector<double>& x, std::vector<double>* y) {
    double* __restrict out = y->data();
    std::fill(out, out + d, 0.0);
    for (int j = 0; j < d; ++j) {
      const double* row = &a[static_cast<size_t>(j) * d];
      const double xj = x[j];
      for (int i = 0; i < d; ++i) out[i] += row[i] * xj;
    }
  };
  auto dot = [d](const std::vector<double>& x, const std::vector<double>& y) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += x[i] * y[i];
    return s;
  };
  int start = 0;
  for (int i = 1; i < d; ++i) {
    if (a[static_cast<size_t>(i) * d + i] >
        a[static_cast<size_t>(start) * d + start])
      start = i;
  }
  std::vector<std::vector<double>> basis(1, std::vector<double>(d, 0.0));
  basis[0][start] = 1.0;
  std::vector<double> alpha, beta, s, w(d);
  double theta = 0;
  for (int j = 0; j < d; ++j) {
    matvec(basis[j], &w);
    alpha.push_back(dot(basis[j], w));
    // Full reorthogonalization, twice ("twice is enough"), against every
    // basis vector; this includes the three-term recurrence.
    for (int pass = 0; pass < 2; ++pass) {
      for (const std::vector<double>& q : basis) {
        const double c = dot(q, w);
        for (int i = 0; i < d; ++i) w[i] -= c * q[i];
      }
    }
    const double b = std::sqrt(dot(w, w));
    TopTridiagonalEigenpair(alpha, beta, &theta, &s);
    // The Ritz residual of the top pair is b * |last component of s|.
    if (b * std::abs(s.back()) <= 1e-10 * std::max(theta, 1e-300) ||
        b <= 1e-300)
      break;
    beta.push_back(b);
    for (int i = 0; i < d; ++i) w[i] /= b;
    basis.push_back(w);
  }
  std::vector<double> v(d, 0.0);
  for (size_t k = 0; k < s.size(); ++k) {
    for (int i = 0; i < d; ++i) v[i] += s[k] * basis[k][i];
  }
  const double norm = std::sqrt(dot(v, v));
  for (double& e : v) e /= norm;
  return v;
}

}  // namespace

std::vector<float> FirstPrincipalComponent(const float* rows, int64_t count,
                                           int dim) {
  c10::InferenceMode guard;
  const at::Tensor x =
      at::from_blob(const_cast<float*>(rows), {count, dim}, at::kFloat);
  const at::Tensor centered = (x - x.mean(0, /*keepdim=*/true)).contiguous();
  // Covariance up to a positive factor, which changes no eigenvector.
  const std::vector<double> a = Gram(centered.data_ptr<float>(), count, dim);
  const std::vector<double> v = LeadingEigenvector(a, dim);
  // Sign rule (DESIGN.md step 2a): the largest |projection| of a centered
  // row onto v is positive (first row on ties).
  std::vector<float> out(v.begin(), v.end());
  const at::Tensor projections =
      at::mv(centered, at::from_blob(out.data(), {dim}, at::kFloat))
          .contiguous();
  const float* p = projections.data_ptr<float>();
  int64_t best = 0;
  for (int64_t i = 1; i < count; ++i) {
    if (std::abs(p[i]) > std::abs(p[best])) best = i;
  }
  if (p[best] < 0) {
    for (float& e : out) e = -e;
  }
  return out;
}

}  // namespace primaps
