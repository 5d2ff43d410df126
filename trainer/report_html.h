// The trainer's report as one standalone HTML file (RUN/report/report.html):
// curves of mIoU and accuracy over the evaluations and of the EM loss over
// the steps as inline SVG, the best of run next to the paper's figures,
// per-class IoU and the confusion matrix with class names. Nothing outside
// the file is loaded, so it opens anywhere, offline.
#ifndef PRIMAPS_TRAINER_REPORT_HTML_H_
#define PRIMAPS_TRAINER_REPORT_HTML_H_

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "trainer/report.h"

namespace primaps {

struct HtmlReportInput {
  std::string title;
  std::vector<nlohmann::json> evaluations;  // metrics.jsonl, in order
  nlohmann::json best;                      // best.json
  std::map<int64_t, double> loss_by_step;   // loss.jsonl (may be empty)
  std::vector<std::string> class_names;     // may be empty
  std::optional<PaperFigures> paper;
};

// The whole HTML document.
std::string HtmlReport(const HtmlReportInput& input);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_REPORT_HTML_H_
