// A closed-loop load generator (`primaps-client bench`): `concurrency`
// clients call one RPC back to back for `duration`.
#ifndef PRIMAPS_CLIENT_LOAD_GENERATOR_H_
#define PRIMAPS_CLIENT_LOAD_GENERATOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace primaps {

struct LoadOptions {
  std::string server;
  // "propose", "pseudo", "segment" or "features".
  std::string rpc = "propose";
  std::string image;  // encoded image bytes
  int concurrency = 4;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration deadline = absl::Seconds(30);
  int resize = 0;
};

struct LoadReport {
  int64_t requests = 0;
  std::map<std::string, int64_t> codes;  // status code name -> count
  double seconds = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
  double ok_per_second = 0;
};

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

// A plain-text summary of a report.
std::string FormatLoadReport(const LoadOptions& options,
                             const LoadReport& report);

}  // namespace primaps

#endif  // PRIMAPS_CLIENT_LOAD_GENERATOR_H_
