// Mean-field inference of the dense CRF (see engine/dense_crf.h for the
// model) on pixel-major rows, given its two pairwise kernels' lattices.
#ifndef PRIMAPS_ENGINE_CRF_MEAN_FIELD_H_
#define PRIMAPS_ENGINE_CRF_MEAN_FIELD_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "base/stop_check.h"

namespace primaps {

class PermutohedralLattice;

// One pairwise term: its lattice, the per-point symmetric normalization
// n = 1 / sqrt(L(1) + 1e-20) and the weight w.
struct MeanFieldKernel {
  const PermutohedralLattice* lattice = nullptr;
  const float* norm = nullptr;
  float weight = 0;
};

// `neg_unary` holds -U in pixel-major rows of `stride` floats: `labels`
// values, then zeros up to the stride, a multiple of 4. Sets `q` (resized
// as neg_unary) to Q = softmax(-U), then `iterations` times to
// Q = softmax(-U + sum_k w_k * n_k * L_k(n_k * Q)), the softmax over each
// row's first `labels` values; the padding stays 0. `stop` (may be null)
// is polled at every iteration and every kStopPollPoints points within one;
// a stop leaves `q` unspecified and returns its status.
absl::Status MeanField(const MeanFieldKernel& gaussian,
                       const MeanFieldKernel& bilateral,
                       const std::vector<float>& neg_unary, int iterations,
                       int labels, int stride, std::vector<float>* q,
                       const StopCheck* stop = nullptr);

// Points between polls inside an iteration: at most a few ms of work.
inline constexpr size_t kStopPollPoints = size_t{1} << 16;

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CRF_MEAN_FIELD_H_
