// The best of a run: best.json, best.safetensors and max_metrics.json.
#ifndef PRIMAPS_TRAINER_BEST_OF_RUN_H_
#define PRIMAPS_TRAINER_BEST_OF_RUN_H_

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "engine/segmentation_head.h"
#include "trainer/evaluation_json.h"

namespace primaps {

// The best evaluation of the run by theta_M's mIoU without CRF (the figure
// the paper reports), kept with its head: OUT/best.json and
// OUT/best.safetensors. Beside it, as train.py's max_metrics do, each
// head's own best mIoU over the run (with that evaluation's accuracy, step
// and phase), independent of theta_M's: OUT/max_metrics.json. A resumed run
// continues from both.
class BestOfRun {
 public:
  // The recorded best of `out_dir` (none yet: a fresh run); an unreadable
  // best.json is an error that names it.
  static absl::StatusOr<BestOfRun> Load(const std::string& out_dir) {
    BestOfRun best(out_dir);
    const std::string path = out_dir + "/best.json";
    if (!std::filesystem::exists(path)) return best;
    ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
    ASSIGN_OR_RETURN(best.best_miou_, ThetaMMiou(bytes, path));
    const std::string max_path = out_dir + "/max_metrics.json";
    if (std::filesystem::exists(max_path)) {
      ASSIGN_OR_RETURN(const std::string max_bytes, ReadFile(max_path));
      best.max_metrics_ = nlohmann::json::parse(max_bytes, nullptr, false);
      if (!best.max_metrics_.is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(max_path,
                         ": not a JSON object; remove it to start "
                         "the maxima over"));
      }
    }
    return best;
  }

  absl::Status Offer(const nlohmann::json& line, const SegmentationHead& head) {
    RETURN_IF_ERROR(OfferMaxima(line));
    const double miou = line["theta_m"]["miou"].get<double>();
    if (miou <= best_miou_) return absl::OkStatus();
    best_miou_ = miou;
    RETURN_IF_ERROR(WriteFileAtomically(out_dir_ + "/best.safetensors",
                                        SerializeHeadCheckpoint(head)));
    return WriteFileAtomically(out_dir_ + "/best.json", line.dump(2) + "\n");
  }

 private:
  explicit BestOfRun(std::string out_dir) : out_dir_(std::move(out_dir)) {}

  // Raises each head's maximum that `line` beats; rewrites the file when
  // one moved.
  absl::Status OfferMaxima(const nlohmann::json& line) {
    bool changed = false;
    for (const char* name : {"theta_m", "theta_r", "linear"}) {
      if (!line.contains(name)) continue;
      const double miou = line[name]["miou"].get<double>();
      const bool known = max_metrics_.contains(name) &&
                         max_metrics_[name].is_object() &&
                         max_metrics_[name].contains("miou") &&
                         max_metrics_[name]["miou"].is_number();
      if (known && miou <= max_metrics_[name]["miou"].get<double>()) continue;
      max_metrics_[name] = {{"miou", miou},
                            {"accuracy", line[name]["accuracy"]},
                            {"step", line["step"]},
                            {"phase", line["phase"]}};
      changed = true;
    }
    if (!changed) return absl::OkStatus();
    return WriteFileAtomically(out_dir_ + "/max_metrics.json",
                               max_metrics_.dump(2) + "\n");
  }

  const std::string out_dir_;
  double best_miou_ = -1;
  nlohmann::json max_metrics_ = nlohmann::json::object();
};

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_BEST_OF_RUN_H_
