// Whole-file reads and crash-safe writes.
#ifndef PRIMAPS_BASE_FILE_UTIL_H_
#define PRIMAPS_BASE_FILE_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primaps {

// Reads a whole file. Refuses files larger than `max_bytes` before reading.
absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     uint64_t max_bytes = uint64_t{1} << 34);

// Writes `contents` so that `path` either keeps its old contents or holds the
// complete new ones, never a prefix: write to a temporary file in the same
// directory, fsync it, rename it over `path`, fsync the directory. On error
// the temporary file is removed.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

// Appends `line` and a newline to `path` (created if missing), in one
// write; an error names the file and the system's reason. For logs of
// records (JSONL) that a crash may cut at a line's end, never inside one
// that was reported written.
absl::Status AppendLine(const std::string& path, absl::string_view line);

// Creates `path` and its missing parents; an error names the directory and
// the system's reason.
absl::Status CreateDirectories(const std::string& path);

// Reads a bearer-token file: the first line, surrounding whitespace (CR
// included) removed. Refuses an empty token. The server, the client and the
// trainer read their tokens with it, so one file works for all three.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace primaps

#endif  // PRIMAPS_BASE_FILE_UTIL_H_
