// The --name=N integer flags the benchmark binaries take.
#ifndef PRIMAPS_BENCH_BENCH_FLAGS_H_
#define PRIMAPS_BENCH_BENCH_FLAGS_H_

#include <string>

#include "absl/strings/numbers.h"

namespace primaps {

// The value of --`name`=N on the command line, or `fallback`.
inline int IntFlag(int argc, char** argv, const std::string& name,
                   int fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    int v;
    if (arg.rfind(prefix, 0) == 0 &&
        absl::SimpleAtoi(arg.substr(prefix.size()), &v))
      return v;
  }
  return fallback;
}

}  // namespace primaps

#endif  // PRIMAPS_BENCH_BENCH_FLAGS_H_
