// Writes float32 arrays in NumPy's .npy format (version 1.0).
#ifndef PRIMAPS_CLIENT_NPY_WRITER_H_
#define PRIMAPS_CLIENT_NPY_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace primaps {

// The bytes of a C-order little-endian float32 array of `shape`;
// `data` holds the product of the shape in floats' bytes.
std::string EncodeNpyFloat32(const std::vector<int64_t>& shape,
                             absl::string_view data);

}  // namespace primaps

#endif  // PRIMAPS_CLIENT_NPY_WRITER_H_
