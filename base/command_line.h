// What the command line said, beyond the parsed flag values.
#ifndef PRIMAPS_BASE_COMMAND_LINE_H_
#define PRIMAPS_BASE_COMMAND_LINE_H_

#include <set>
#include <string>

namespace primaps {

// The names of the flags given on the command line (`--name=value`,
// `--name value`, `-name`), up to a `--`: so that a config file or a preset
// fills only what the user did not set.
std::set<std::string> FlagsGiven(int argc, char** argv);

// The usage message, and --help / --helpshort listing the flags the
// program's own main.cc defines with their meaning (Abseil's default lists
// only flags of a file named like the binary, so it printed "No flags
// matched"). Call before absl::ParseCommandLine.
void SetUsage(const std::string& message);

}  // namespace primaps

#endif  // PRIMAPS_BASE_COMMAND_LINE_H_
