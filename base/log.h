// One log line per event on stderr: severity, UTC time to the millisecond,
// the program's name and the message, written with one call so that lines
// from several threads never interleave:
//
//   I 2026-12-04T22:10:01.123Z primaps-server: serving on port 50051 ...
//
// Each binary names itself once at the start of main (SetLogProgramName).
#ifndef PRIMAPS_BASE_LOG_H_
#define PRIMAPS_BASE_LOG_H_

#include <string>

#include "absl/strings/string_view.h"

namespace primaps {

enum class LogSeverity { kInfo, kWarning, kError };

// "primaps" until set.
void SetLogProgramName(std::string name);

void Log(LogSeverity severity, absl::string_view message);
inline void LogInfo(absl::string_view message) {
  Log(LogSeverity::kInfo, message);
}
inline void LogWarning(absl::string_view message) {
  Log(LogSeverity::kWarning, message);
}
inline void LogError(absl::string_view message) {
  Log(LogSeverity::kError, message);
}

// The line Log writes, without the newline (for tests).
std::string FormatLogLine(LogSeverity severity, absl::string_view message);

}  // namespace primaps

#endif  // PRIMAPS_BASE_LOG_H_
