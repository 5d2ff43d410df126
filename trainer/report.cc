#include "trainer/report.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "datasets/dataset_info.h"
#include "engine/segmentation_head.h"
#include "trainer/evaluation.h"
#include "trainer/report_html.h"

namespace primaps {
namespace {

using Json = nlohmann::json;

// The evaluations of metrics.jsonl, in order.
absl::StatusOr<std::vector<Json>> ReadMetrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<Json> lines;
  std::string text;
  while (std::getline(in, text)) {
    if (text.empty()) continue;
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("theta_m")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", lines.size() + 1, " is no evaluation"));
    }
    lines.push_back(std::move(j));
  }
  if (lines.empty())
    return absl::NotFoundError(absl::StrCat(path, " holds no evaluation"));
  return lines;
}

double Figure(const Json& line, const char* head, const char* key) {
  return line.contains(head) ? line[head].value(key, std::nan(""))
                             : std::nan("");
}

// A line plot of `series` (name, key in the lines) over the evaluations.
absl::Status Plot(const std::vector<Json>& lines, const char* key,
                  const std::string& title, const std::string& path) {
  const int width = 720, height = 400, left = 60, right = 170, top = 40,
            bottom = 50;
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const int pw = width - left - right, ph = height - top - bottom;
  cv::rectangle(canvas, {left, top}, {left + pw, top + ph}, {0, 0, 0});
  for (int v = 0; v <= 100; v += 20) {
    const int y = top + ph - ph * v / 100;
    cv::line(canvas, {left, y}, {left + pw, y}, {225, 225, 225});
    cv::putText(canvas, std::to_string(v), {left - 34, y + 5},
                cv::FONT_HERSHEY_SIMPLEX, 0.45, {0, 0, 0});
  }
  cv::putText(canvas, title, {left, 26}, cv::FONT_HERSHEY_SIMPLEX, 0.6,
              {0, 0, 0});
  cv::putText(canvas, "evaluation (phase, step)",
              {left + pw / 2 - 90, height - 14}, cv::FONT_HERSHEY_SIMPLEX, 0.45,
              {0, 0, 0});
  struct Series {
    const char* head;
    const char* name;
    cv::Scalar colour;  // BGR
  };
  const Series series[] = {{"theta_m", "theta_M", {200, 80, 0}},
                           {"theta_m_crf", "theta_M + CRF", {240, 170, 90}},
                           {"theta_r", "theta_R", {0, 120, 230}},
                           {"theta_r_crf", "theta_R + CRF", {90, 180, 250}},
                           {"linear", "linear probe", {60, 160, 60}}};
  const size_t n = lines.size();
  int legend = 0;
  for (const Series& s : series) {
    std::vector<cv::Point> points;
    for (size_t i = 0; i < n; ++i) {
      const double v = Figure(lines[i], s.head, key);
      if (std::isnan(v)) continue;
      const int x =
          left + (n == 1 ? pw / 2 : static_cast<int>(pw * i / (n - 1)));
      points.push_back({x, top + ph - static_cast<int>(ph * v / 100)});
    }
    if (points.empty()) continue;
    cv::polylines(canvas, points, false, s.colour, 2, cv::LINE_AA);
    for (const cv::Point& p : points) cv::circle(canvas, p, 3, s.colour, -1);
    const int ly = top + 16 + 22 * legend++;
    cv::line(canvas, {left + pw + 12, ly - 5}, {left + pw + 36, ly - 5},
             s.colour, 2);
    cv::putText(canvas, s.name, {left + pw + 42, ly}, cv::FONT_HERSHEY_SIMPLEX,
                0.45, {0, 0, 0});
  }
  if (!cv::imwrite(path, canvas))
    return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// The matched confusion matrix with row names and column numbers.
absl::Status ConfusionWithNames(const Json& matrix,
                                const std::vector<std::string>& names,
                                const std::string& path) {
  const auto rows = matrix.get<std::vector<std::vector<int64_t>>>();
  const int cell = 18, c = static_cast<int>(rows.size());
  const RgbImage heat = ConfusionHeatMap(rows, cell);
  const int left = 150, top = 30;
  cv::Mat canvas(top + c * cell + 30, left + c * cell + 10, CV_8UC3,
                 cv::Scalar(255, 255, 255));
  cv::Mat rgb(heat.height, heat.width, CV_8UC3,
              const_cast<uint8_t*>(heat.pixels.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  bgr.copyTo(canvas(cv::Rect(left, top, heat.width, heat.height)));
  for (int r = 0; r < c; ++r) {
    const std::string label = r < static_cast<int>(names.size())
                                  ? absl::StrCat(r, " ", names[r])
                                  : std::to_string(r);
    cv::putText(canvas, label, {4, top + r * cell + 13},
                cv::FONT_HERSHEY_SIMPLEX, 0.4, {0, 0, 0});
    cv::putText(canvas, std::to_string(r), {left + r * cell + 2, top - 8},
                cv::FONT_HERSHEY_SIMPLEX, 0.33, {0, 0, 0});
  }
  cv::putText(canvas, "rows: predicted (matched), columns: ground truth",
              {left, top + c * cell + 20}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
              {0, 0, 0});
  if (!cv::imwrite(path, canvas))
    return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string Cell(double v) {
  return std::isnan(v) ? "-" : absl::StrFormat("%.1f", v);
}

// loss.jsonl's loss per step (the last line of a step wins: a resumed run
// repeats steps); empty when there is no file.
std::map<int64_t, double> ReadLosses(const std::string& path) {
  std::map<int64_t, double> losses;
  std::ifstream in(path);
  std::string text;
  while (std::getline(in, text)) {
    const Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j.contains("loss") ||
        !j["loss"].is_number())
      continue;  // a line cut short by a kill
    losses[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return losses;
}

// The heads' figures of one evaluation, the paper's beside theta_M.
std::string FiguresTable(const Json& evaluation,
                         const std::optional<PaperFigures>& paper) {
  std::string md =
      "| head | accuracy | mIoU | paper accuracy | paper mIoU |\n"
      "|---|---|---|---|---|\n";
  const std::pair<const char*, const char*> heads[] = {
      {"theta_m", "theta_M (paper's figure)"},
      {"theta_m_crf", "theta_M + CRF"},
      {"theta_r", "theta_R"},
      {"theta_r_crf", "theta_R + CRF"},
      {"linear", "linear probe (supervised)"}};
  for (const auto& [key, name] : heads) {
    if (!evaluation.contains(key)) continue;
    const bool paper_row = std::string(key) == "theta_m" && paper.has_value();
    absl::StrAppend(&md, "| ", name, " | ",
                    Cell(Figure(evaluation, key, "accuracy")), " | ",
                    Cell(Figure(evaluation, key, "miou")), " | ",
                    paper_row ? Cell(paper->accuracy) : "", " | ",
                    paper_row ? Cell(paper->miou) : "", " |\n");
  }
  if (!paper.has_value()) {
    absl::StrAppend(&md,
                    "\nNo paper figure here for this dataset, backbone and "
                    "method (the table holds the paper's PriMaPs-EM rows "
                    "only).\n");
  }
  return md;
}

// theta_M's IoU per class, named when `names` has the class.
std::string PerClassTable(const Json& evaluation,
                          const std::vector<std::string>& names) {
  std::string md = "| class | IoU |\n|---|---|\n";
  const Json& theta_m = evaluation["theta_m"];
  const Json ious = theta_m.is_object() && theta_m.contains("class_iou") &&
                            theta_m["class_iou"].is_array()
                        ? theta_m["class_iou"]
                        : Json::array();
  for (size_t k = 0; k < ious.size(); ++k) {
    const std::string name =
        k < names.size() ? names[k] : absl::StrCat("class ", k);
    absl::StrAppend(&md, "| ", k, " ", name, " | ",
                    !ious[k].is_number() ? "-" : Cell(ious[k].get<double>()),
                    " |\n");
  }
  return md;
}

// "PriMaPs-EM", or "STEGO+PriMaPs-EM" / "HP+PriMaPs-EM" when stacked.
std::string MethodName(const std::string& stacked_on) {
  if (stacked_on == "stego") return "STEGO+PriMaPs-EM";
  if (stacked_on == "hp") return "HP+PriMaPs-EM";
  return "PriMaPs-EM";
}

absl::StatusOr<std::vector<std::string>> ClassNames(
    const std::string& dataset) {
  if (dataset.empty()) return std::vector<std::string>();
  ASSIGN_OR_RETURN(const DatasetInfo* info, FindDataset(dataset));
  return info->class_names;
}

}  // namespace

std::optional<PaperFigures> PaperResult(const std::string& dataset,
                                        const std::string& backbone) {
  struct Row {
    const char* dataset;
    const char* backbone;
    PaperFigures figures;
  };
  // PriMaPs-EM in the paper (Hahn et al., TMLR 2024), accuracy / mIoU.
  static const Row kRows[] = {
      {"cityscapes", "dino_vits8", {81.2, 19.4}},
      {"cocostuff27", "dino_vits8", {46.5, 16.4}},
      {"potsdam3", "dino_vits8", {62.5, 38.9}},
      {"cityscapes", "dinov2_vitb14", {82.9, 21.3}},
      {"cocostuff27", "dinov2_vitb14", {52.8, 23.6}},
      {"potsdam3", "dinov2_vitb14", {83.2, 71.1}},
  };
  for (const Row& r : kRows) {
    if (dataset == r.dataset && backbone == r.backbone) return r.figures;
  }
  return std::nullopt;
}

absl::Status WriteReport(const ReportOptions& o) {
  ASSIGN_OR_RETURN(const std::vector<Json> lines,
                   ReadMetrics(o.run_dir + "/metrics.jsonl"));
  ASSIGN_OR_RETURN(const std::string best_text,
                   ReadFile(o.run_dir + "/best.json"));
  const Json best = Json::parse(best_text, nullptr, false);
  if (best.is_discarded() || !best.contains("theta_m"))
    return absl::InvalidArgumentError(o.run_dir +
                                      "/best.json is no evaluation");
  std::string backbone = o.backbone;
  if (backbone.empty()) {
    if (auto bytes = ReadFile(o.run_dir + "/best.safetensors"); bytes.ok()) {
      if (auto head = ParseHeadCheckpoint(*bytes, "", 0); head.ok())
        backbone = head->backbone;
    }
  }
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ClassNames(o.dataset));
  const std::string dir = o.run_dir + "/report";
  RETURN_IF_ERROR(CreateDirectories(dir));
  RETURN_IF_ERROR(
      Plot(lines, "miou", "mIoU (%) per evaluation", dir + "/miou.png"));
  RETURN_IF_ERROR(Plot(lines, "accuracy", "pixel accuracy (%) per evaluation",
                       dir + "/accuracy.png"));
  if (best.contains("theta_m_confusion")) {
    RETURN_IF_ERROR(ConfusionWithNames(best["theta_m_confusion"], names,
                                       dir + "/confusion.png"));
  }

  // The table holds the paper's PriMaPs-EM rows; its +SotA+PriMaPs rows
  // are not reproduced here.
  const std::optional<PaperFigures> paper =
      o.stacked_on.empty() ? PaperResult(o.dataset, backbone) : std::nullopt;
  std::string md = absl::StrCat(
      "# ", MethodName(o.stacked_on),
      " run: ", o.dataset.empty() ? "dataset not named" : o.dataset,
      ", backbone ", backbone.empty() ? "unknown" : backbone, "\n\n",
      lines.size(),
      " evaluations in `metrics.jsonl`; the best of run (by "
      "theta_M mIoU without CRF, the figure the paper reports) is at phase ",
      best.value("phase", "?"), ", step ", best.value("step", int64_t{0}),
      " (`best.json`, head in `best.safetensors`).\n\n",
      FiguresTable(best, paper),
      "\n## Per-class IoU (theta_M, best of run)\n\n",
      PerClassTable(best, names));
  absl::StrAppend(&md,
                  "\n## Over the run\n\n![mIoU](miou.png)\n\n"
                  "![accuracy](accuracy.png)\n\n"
                  "## Confusion (theta_M, best of run)\n\n"
                  "![confusion](confusion.png)\n\n"
                  "| phase | step | theta_M mIoU | theta_M acc | theta_R "
                  "mIoU | linear mIoU |\n|---|---|---|---|---|---|\n");
  for (const Json& l : lines) {
    absl::StrAppend(&md, "| ", l.value("phase", "?"), " | ",
                    l.value("step", int64_t{0}), " | ",
                    Cell(Figure(l, "theta_m", "miou")), " | ",
                    Cell(Figure(l, "theta_m", "accuracy")), " | ",
                    Cell(Figure(l, "theta_r", "miou")), " | ",
                    Cell(Figure(l, "linear", "miou")), " |\n");
  }
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/REPORT.md", md));

  HtmlReportInput html;
  html.title = absl::StrCat(
      MethodName(o.stacked_on),
      " run: ", o.dataset.empty() ? "dataset not named" : o.dataset,
      ", backbone ", backbone.empty() ? "unknown" : backbone);
  html.evaluations = lines;
  html.best = best;
  html.loss_by_step = ReadLosses(o.run_dir + "/loss.jsonl");
  html.class_names = names;
  html.paper = paper;
  return WriteFileAtomically(dir + "/report.html", HtmlReport(html));
}

absl::Status WriteEvaluationReport(const std::string& out_dir,
                                   const std::string& dataset) {
  const std::string path = out_dir + "/evaluation.json";
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  const Json evaluation = Json::parse(text, nullptr, false);
  if (evaluation.is_discarded() || !evaluation.contains("theta_m"))
    return absl::InvalidArgumentError(path + " is no evaluation");
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ClassNames(dataset));
  const std::string backbone = evaluation.value("backbone", "");
  const std::string dir = out_dir + "/report";
  RETURN_IF_ERROR(CreateDirectories(dir));
  if (evaluation.contains("theta_m_confusion")) {
    RETURN_IF_ERROR(ConfusionWithNames(evaluation["theta_m_confusion"], names,
                                       dir + "/confusion.png"));
  }
  const std::string md = absl::StrCat(
      "# Evaluation: ", dataset.empty() ? "dataset not named" : dataset,
      ", backbone ", backbone.empty() ? "unknown" : backbone, "\n\n",
      "The heads of ", evaluation.value("checkpoint", "?"), " on ",
      evaluation.value("images", int64_t{0}), " images at resize ",
      evaluation.value("resize", 0),
      evaluation.value("flip_tta", false) ? ", with" : ", without",
      " flip TTA, scored as the reference's test.py does "
      "(`evaluation.json`; docs/evaluation.md).\n\n",
      FiguresTable(evaluation, PaperResult(dataset, backbone)),
      "\n## Per-class IoU (theta_M)\n\n", PerClassTable(evaluation, names),
      evaluation.contains("theta_m_confusion")
          ? "\n## Confusion (theta_M)\n\n![confusion](confusion.png)\n"
          : "");
  return WriteFileAtomically(dir + "/REPORT.md", md);
}

}  // namespace primaps
