#include "base/command_line.h"

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

}  // namespace primaps
