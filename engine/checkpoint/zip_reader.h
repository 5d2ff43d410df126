// Reads entries of a zip archive held in memory, as written by torch.save
// (stored entries, optionally ZIP64) or re-zipped with deflate. Every offset
// and size is bounds-checked and every entry's CRC-32 verified, so a
// truncated or corrupt archive is an error, never a crash.
#ifndef PRIMAPS_ENGINE_CHECKPOINT_ZIP_READER_H_
#define PRIMAPS_ENGINE_CHECKPOINT_ZIP_READER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primaps {

class ZipReader {
 public:
  // `bytes` must outlive the reader.
  static absl::StatusOr<std::unique_ptr<ZipReader>> Open(
      absl::string_view bytes);

  std::vector<std::string> EntryNames() const;
  bool Contains(const std::string& name) const {
    return entries_.count(name) > 0;
  }

  // The uncompressed contents of one entry.
  absl::StatusOr<std::string> Read(const std::string& name) const;

 private:
  struct Entry {
    uint16_t method = 0;
    uint32_t crc32 = 0;
    uint64_t compressed_size = 0;
    uint64_t uncompressed_size = 0;
    uint64_t local_header_offset = 0;
  };

  explicit ZipReader(absl::string_view bytes) : bytes_(bytes) {}
  absl::Status ParseCentralDirectory();

  absl::string_view bytes_;
  std::map<std::string, Entry> entries_;
};

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CHECKPOINT_ZIP_READER_H_
