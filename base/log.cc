#include "base/log.h"

#include <cstdio>

#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace primaps {
namespace {

ABSL_CONST_INIT absl::Mutex name_mu(absl::kConstInit);
std::string* program_name ABSL_GUARDED_BY(name_mu) = nullptr;

std::string ProgramName() {
  absl::MutexLock lock(&name_mu);
  return program_name != nullptr ? *program_name : "primaps";
}

char SeverityLetter(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return 'I';
    case LogSeverity::kWarning:
      return 'W';
    case LogSeverity::kError:
      return 'E';
  }
  return '?';
}

}  // namespace

void SetLogProgramName(std::string name) {
  absl::MutexLock lock(&name_mu);
  delete program_name;
  program_name = new std::string(std::move(name));
}

std::string FormatLogLine(LogSeverity severity, absl::string_view message) {
  return absl::StrCat(std::string(1, SeverityLetter(severity)), " ",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                       absl::UTCTimeZone()),
                      " ", ProgramName(), ": ", message);
}

void Log(LogSeverity severity, absl::string_view message) {
  const std::string line = absl::StrCat(FormatLogLine(severity, message), "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace primaps
