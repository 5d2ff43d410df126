#include "trainer/report_html.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace primaps {
namespace {

using Json = nlohmann::json;

std::string Escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

double Figure(const Json& line, const char* head, const char* key) {
  if (!line.contains(head) || !line[head].contains(key) ||
      !line[head][key].is_number())
    return std::nan("");
  return line[head][key].get<double>();
}

std::string Cell(double v) {
  return std::isnan(v) ? "–" : absl::StrFormat("%.1f", v);
}

struct Series {
  std::string name;
  std::string colour;
  std::vector<std::pair<double, double>> points;  // x, y
};

// A line chart as inline SVG, y from y_min to y_max.
std::string SvgChart(const std::string& title, const std::string& x_label,
                     const std::vector<Series>& series, double y_min,
                     double y_max) {
  const double width = 720, height = 340, left = 56, right = 170, top = 34,
               bottom = 44;
  const double pw = width - left - right, ph = height - top - bottom;
  double x_min = INFINITY, x_max = -INFINITY;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      x_min = std::min(x_min, x);
      x_max = std::max(x_max, x);
    }
  }
  if (!std::isfinite(x_min)) x_min = 0, x_max = 1;
  if (x_max == x_min) x_max = x_min + 1;
  if (y_max <= y_min) y_max = y_min + 1;
  auto px = [&](double x) { return left + pw * (x - x_min) / (x_max - x_min); };
  auto py = [&](double y) {
    return top + ph -
           ph * (std::clamp(y, y_min, y_max) - y_min) / (y_max - y_min);
  };
  std::string svg = absl::StrFormat(
      R"(<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">)"
      R"(<text x="%.0f" y="20" class="title">%s</text>)",
      width, height, Escape(title), left, Escape(title));
  for (int i = 0; i <= 5; ++i) {
    const double v = y_min + (y_max - y_min) * i / 5;
    absl::StrAppendFormat(
        &svg,
        R"(<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>)"
        R"(<text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>)",
        left, py(v), left + pw, py(v), left - 6, py(v) + 4,
        absl::StrFormat(y_max - y_min >= 5 ? "%.0f" : "%.2f", v));
  }
  absl::StrAppendFormat(
      &svg,
      R"(<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="frame"/>)"
      R"(<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%s</text>)"
      R"(<text x="%.1f" y="%.1f" class="tick">%s</text>)"
      R"(<text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>)",
      left, top, pw, ph, left + pw / 2, height - 8, Escape(x_label), left,
      top + ph + 16, absl::StrFormat("%g", x_min), left + pw, top + ph + 16,
      absl::StrFormat("%g", x_max));
  int legend = 0;
  for (const Series& s : series) {
    if (s.points.empty()) continue;
    std::string path;
    for (const auto& [x, y] : s.points)
      absl::StrAppendFormat(&path, "%s%.1f,%.1f ", path.empty() ? "" : "",
                            px(x), py(y));
    absl::StrAppendFormat(
        &svg,
        R"(<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>)",
        path, s.colour);
    if (s.points.size() <= 60) {
      for (const auto& [x, y] : s.points)
        absl::StrAppendFormat(
            &svg,
            R"(<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %g at %g</title></circle>)",
            px(x), py(y), s.colour, Escape(s.name), y, x);
    }
    const double ly = top + 14 + 20 * legend++;
    absl::StrAppendFormat(
        &svg,
        R"(<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>)"
        R"(<text x="%.1f" y="%.1f" class="tick">%s</text>)",
        left + pw + 10, ly - 4, left + pw + 32, ly - 4, s.colour,
        left + pw + 38, ly, Escape(s.name));
  }
  return svg + "</svg>\n";
}

// mIoU or accuracy of every head over the evaluations (x = evaluation
// number, as phases restart their step counts).
std::string EvaluationChart(const std::vector<Json>& lines, const char* key,
                            const std::string& title) {
  struct Head {
    const char* key;
    const char* name;
    const char* colour;
  };
  const Head heads[] = {{"theta_m", "θ_M", "#0050c8"},
                        {"theta_m_crf", "θ_M + CRF", "#5aa0f0"},
                        {"theta_r", "θ_R", "#e67800"},
                        {"theta_r_crf", "θ_R + CRF", "#fab45a"},
                        {"linear", "linear probe", "#3ca03c"}};
  std::vector<Series> series;
  for (const Head& h : heads) {
    Series s{h.name, h.colour, {}};
    for (size_t i = 0; i < lines.size(); ++i) {
      const double v = Figure(lines[i], h.key, key);
      if (!std::isnan(v)) s.points.push_back({static_cast<double>(i + 1), v});
    }
    series.push_back(std::move(s));
  }
  return SvgChart(title, "evaluation", series, 0, 100);
}

std::string LossChart(const std::map<int64_t, double>& loss) {
  Series s{"focal loss", "#b4285a", {}};
  double y_max = 0;
  // At most ~500 points: means over equal runs of steps.
  const size_t stride = std::max<size_t>(1, loss.size() / 500);
  double sum = 0;
  size_t n = 0;
  for (const auto& [step, value] : loss) {
    sum += value;
    if (++n == stride) {
      s.points.push_back({static_cast<double>(step), sum / n});
      y_max = std::max(y_max, sum / n);
      sum = 0;
      n = 0;
    }
  }
  return SvgChart("EM loss over the steps", "step", {s}, 0,
                  y_max > 0 ? y_max * 1.05 : 1);
}

// The matched confusion matrix as a table shaded by each row's share.
std::string ConfusionTable(const Json& matrix,
                           const std::vector<std::string>& names) {
  const auto rows = matrix.get<std::vector<std::vector<int64_t>>>();
  auto name = [&](size_t k) {
    return k < names.size() ? absl::StrCat(k, " ", names[k])
                            : absl::StrCat("class ", k);
  };
  std::string html =
      "<table class=\"confusion\"><thead><tr><th>predicted ↓ / truth "
      "→</th>";
  for (size_t c = 0; c < rows.size(); ++c)
    absl::StrAppend(&html, "<th class=\"col\" title=\"", Escape(name(c)),
                    "\"><span>", Escape(name(c)), "</span></th>");
  html += "</tr></thead><tbody>";
  for (size_t r = 0; r < rows.size(); ++r) {
    int64_t total = 0;
    for (int64_t v : rows[r]) total += v;
    absl::StrAppend(&html, "<tr><th>", Escape(name(r)), "</th>");
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const double share = total > 0 ? double(rows[r][c]) / total : 0;
      absl::StrAppendFormat(
          &html,
          R"(<td style="background: rgba(0, 80, 200, %.3f)%s" title="%s → %s: %d pixels">%s</td>)",
          share, share > 0.5 ? "; color: #fff" : "", Escape(name(r)),
          Escape(name(c)), rows[r][c],
          share >= 0.005 ? absl::StrFormat("%.0f", 100 * share) : "");
    }
    html += "</tr>";
  }
  return html +
         "</tbody></table><p class=\"note\">Rows: predicted clusters after "
         "Hungarian matching; columns: ground truth; cells: percent of the "
         "row.</p>\n";
}

constexpr char kStyle[] = R"(<style>
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child { text-align: left; }
.chart { width: 100%; max-width: 720px; display: block; margin: 1em 0; }
.chart .title { font-weight: 600; font-size: 14px; }
.chart .tick { font-size: 11px; fill: #444; }
.chart .grid { stroke: #e6e6e6; } .chart .frame { fill: none; stroke: #888; }
.confusion td { width: 1.8em; text-align: center; font-size: 11px; border: 1px solid #fff; padding: 0.15em; }
.confusion th { font-size: 12px; font-weight: normal; }
.confusion th.col { height: 9em; vertical-align: bottom; padding: 0; }
.confusion th.col span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
.note { color: #666; font-size: 0.9em; }
</style>
)";

}  // namespace

std::string HtmlReport(const HtmlReportInput& in) {
  const Json& best = in.best;
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>",
      Escape(in.title), "</title>\n", kStyle, "</head><body>\n<h1>",
      Escape(in.title), "</h1>\n<p>", in.evaluations.size(),
      " evaluations; the best of run (by θ_M mIoU without CRF, the paper's "
      "figure) is at phase ",
      Escape(best.value("phase", "?")), ", step ",
      best.value("step", int64_t{0}),
      ".</p>\n<table><thead><tr><th>head</th><th>accuracy</th><th>mIoU</th>"
      "<th>paper accuracy</th><th>paper mIoU</th></tr></thead><tbody>");
  const std::pair<const char*, const char*> heads[] = {
      {"theta_m", "θ_M (the paper's figure)"},
      {"theta_m_crf", "θ_M + CRF"},
      {"theta_r", "θ_R"},
      {"theta_r_crf", "θ_R + CRF"},
      {"linear", "linear probe (supervised)"}};
  for (const auto& [key, name] : heads) {
    if (!best.contains(key)) continue;
    const bool paper_row = std::string(key) == "theta_m" && in.paper;
    absl::StrAppend(&html, "<tr><th>", name, "</th><td>",
                    Cell(Figure(best, key, "accuracy")), "</td><td>",
                    Cell(Figure(best, key, "miou")), "</td><td>",
                    paper_row ? Cell(in.paper->accuracy) : "", "</td><td>",
                    paper_row ? Cell(in.paper->miou) : "", "</td></tr>");
  }
  html += "</tbody></table>\n";
  if (!in.paper)
    html +=
        "<p class=\"note\">The paper reports no figure for this dataset "
        "and backbone.</p>\n";

  html += "<h2>Over the run</h2>\n";
  html += EvaluationChart(in.evaluations, "miou", "mIoU (%) per evaluation");
  html += EvaluationChart(in.evaluations, "accuracy",
                          "pixel accuracy (%) per evaluation");
  if (!in.loss_by_step.empty()) {
    html += LossChart(in.loss_by_step);
  } else {
    html +=
        "<p class=\"note\">No loss.jsonl: the run has no EM steps "
        "yet.</p>\n";
  }

  html +=
      "<h2>Per-class IoU (θ_M, best of run)</h2>\n<table><thead><tr>"
      "<th>class</th><th>IoU</th></tr></thead><tbody>";
  if (best.contains("theta_m") && best["theta_m"].contains("class_iou")) {
    const Json& ious = best["theta_m"]["class_iou"];
    for (size_t k = 0; k < ious.size(); ++k) {
      const std::string name = k < in.class_names.size()
                                   ? absl::StrCat(k, " ", in.class_names[k])
                                   : absl::StrCat("class ", k);
      absl::StrAppend(&html, "<tr><th>", Escape(name), "</th><td>",
                      ious[k].is_number() ? Cell(ious[k].get<double>()) : "–",
                      "</td></tr>");
    }
  }
  html += "</tbody></table>\n";
  if (best.contains("theta_m_confusion")) {
    html += "<h2>Confusion (θ_M, best of run)</h2>\n";
    html += ConfusionTable(best["theta_m_confusion"], in.class_names);
  }

  html +=
      "<h2>Every evaluation</h2>\n<table><thead><tr><th>#</th>"
      "<th>phase</th><th>step</th><th>θ_M mIoU</th><th>θ_M acc</th>"
      "<th>θ_R mIoU</th><th>θ_R acc</th><th>linear mIoU</th></tr>"
      "</thead><tbody>";
  for (size_t i = 0; i < in.evaluations.size(); ++i) {
    const Json& l = in.evaluations[i];
    absl::StrAppend(&html, "<tr><td>", i + 1, "</td><td>",
                    Escape(l.value("phase", "?")), "</td><td>",
                    l.value("step", int64_t{0}), "</td><td>",
                    Cell(Figure(l, "theta_m", "miou")), "</td><td>",
                    Cell(Figure(l, "theta_m", "accuracy")), "</td><td>",
                    Cell(Figure(l, "theta_r", "miou")), "</td><td>",
                    Cell(Figure(l, "theta_r", "accuracy")), "</td><td>",
                    Cell(Figure(l, "linear", "miou")), "</td></tr>");
  }
  return html + "</tbody></table>\n</body></html>\n";
}

}  // namespace primaps
