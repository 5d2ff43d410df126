// The first principal component of a set of feature vectors (exact, via a
// symmetric eigendecomposition of the covariance; no randomization).
#ifndef PRIMAPS_ENGINE_PRINCIPAL_COMPONENT_H_
#define PRIMAPS_ENGINE_PRINCIPAL_COMPONENT_H_

#include <cstdint>
#include <vector>

namespace primaps {

// `rows` holds `count` vectors of `dim` floats. Returns the unit-length
// eigenvector of the largest eigenvalue of the covariance of the centered
// rows, oriented by PriMaPs' sign rule (DESIGN.md step 2a): the largest
// |projection| of a centered row onto it is positive (first row on ties).
std::vector<float> FirstPrincipalComponent(const float* rows, int64_t count,
                                           int dim);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_PRINCIPAL_COMPONENT_H_
