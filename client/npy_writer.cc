#include "client/npy_writer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace primaps {

std::string EncodeNpyFloat32(const std::vector<int64_t>& shape,
                             absl::string_view data) {
  std::string dims = absl::StrJoin(shape, ", ");
  if (shape.size() == 1) dims += ",";
  std::string header = absl::StrCat(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (", dims, "), }");
  // Magic (6) + version (2) + header length (2) + header, padded with
  // spaces to a multiple of 64 and ended by a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xFF));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(data.data(), data.size());
  return out;
}

}  // namespace primaps
