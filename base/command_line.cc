#include "base/command_line.h"

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace primaps {

std::set<std::string> FlagsGiven(int argc, char** argv) {
  std::set<std::string> names;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.rfind("-", 0) != 0) continue;
    arg = arg.substr(arg.find_first_not_of('-'));
    names.insert(arg.substr(0, arg.find('=')));
  }
  return names;
}

void SetUsage(const std::string& message) {
  absl::SetProgramUsageMessage(message);
  absl::FlagsUsageConfig config;
  const auto ours = [](absl::string_view file) {
    return absl::EndsWith(file, "/main.cc");
  };
  config.contains_help_flags = ours;
  config.contains_helpshort_flags = ours;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace primaps
