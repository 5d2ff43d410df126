#include "trainer/checkpoints.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace primaps {
namespace fs = std::filesystem;

std::string CheckpointPath(const TrainerOptions& o, int64_t step) {
  return absl::StrFormat("%s/checkpoints/step_%08d.safetensors", o.out_dir,
                         step);
}

// The checkpoints in OUT/checkpoints, oldest first (their names sort by
// step).
std::vector<std::string> CheckpointFiles(const TrainerOptions& o) {
  std::vector<std::string> all;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o.out_dir + "/checkpoints", ec)) {
    if (e.path().extension() == ".safetensors")
      all.push_back(e.path().string());
  }
  std::sort(all.begin(), all.end());
  return all;
}

absl::Status SaveCheckpoint(const TrainerOptions& o,
                            const HeadTrainer& trainer) {
  RETURN_IF_ERROR(CreateDirectories(o.out_dir + "/checkpoints"));
  const std::map<std::string, std::string> metadata = {
      {"config", nlohmann::json({{"classes", o.classes},
                                 {"batch", o.batch},
                                 {"resize", o.resize},
                                 {"learning_rate", o.learning_rate},
                                 {"focal_gamma", o.focal_gamma},
                                 {"seed", o.seed}})
                     .dump()}};
  ASSIGN_OR_RETURN(const std::string checkpoint,
                   trainer.SerializeCheckpoint(metadata));
  RETURN_IF_ERROR(
      WriteFileAtomically(CheckpointPath(o, trainer.step()), checkpoint));
  // Keep the newest few.
  const std::vector<std::string> all = CheckpointFiles(o);
  for (size_t i = 0; i + o.keep_checkpoints < all.size(); ++i) {
    std::error_code ec;
    if (!fs::remove(all[i], ec) && ec)
      LogInfo(absl::StrCat("cannot remove the old checkpoint ", all[i], ": ",
                           ec.message()));
  }
  return absl::OkStatus();
}

std::string NewestCheckpoint(const TrainerOptions& o) {
  const std::vector<std::string> all = CheckpointFiles(o);
  return all.empty() ? "" : all.back();
}

}  // namespace primaps
