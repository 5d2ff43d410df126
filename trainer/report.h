// `primaps-trainer report`: a run's results next to the paper's, as
// REPORT.md with plots (mIoU and accuracy over the evaluations) and the
// best evaluation's confusion matrix with class names, as PNGs.
#ifndef PRIMAPS_TRAINER_REPORT_H_
#define PRIMAPS_TRAINER_REPORT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"

namespace primaps {

// The paper's PriMaPs-EM figures (accuracy, mIoU, percent) for a dataset and
// backbone id, when it reports them.
struct PaperFigures {
  double accuracy = 0;
  double miou = 0;
};
std::optional<PaperFigures> PaperResult(const std::string& dataset,
                                        const std::string& backbone);

struct ReportOptions {
  std::string run_dir;   // the trainer's --out (metrics.jsonl, best.json)
  std::string dataset;   // cityscapes, cocostuff27, potsdam3 or empty
  std::string backbone;  // empty: from best.safetensors
  // "stego" or "hp": the run is PriMaPs-EM on top of that method.
  std::string stacked_on;
};

// Writes RUN/report/REPORT.md, miou.png, accuracy.png and confusion.png,
// and the same as one standalone report.html (trainer/report_html.h) with
// the loss curve from loss.jsonl.
absl::Status WriteReport(const ReportOptions& options);

// `primaps-trainer evaluate`'s report: OUT/report/REPORT.md (the heads'
// figures next to the paper's, theta_M per class) and confusion.png, from
// OUT/evaluation.json. `dataset` names the classes and the paper's row.
absl::Status WriteEvaluationReport(const std::string& out_dir,
                                   const std::string& dataset);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_REPORT_H_
