#include "trainer/run_evaluation.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "engine/dense_labels.h"
#include "engine/image/label_image.h"
#include "trainer/evaluation.h"
#include "trainer/feature_cache.h"
#include "trainer/training_data.h"

namespace primaps {
namespace fs = std::filesystem;

namespace {

nlohmann::json ScoresJson(const SegmentationScores& s) {
  nlohmann::json j = {{"miou", s.miou}, {"accuracy", s.accuracy}};
  std::vector<nlohmann::json> per_class;
  for (double iou : s.class_iou)
    per_class.push_back(std::isnan(iou) ? nlohmann::json(nullptr)
                                        : nlohmann::json(iou));
  j["class_iou"] = per_class;
  return j;
}

// The linear probe's scores on the feature grid, W f + b.
std::vector<float> LinearScores(const SegmentationHead& head,
                                const FeatureMap& f) {
  const int k = head.classes;
  const size_t cells = static_cast<size_t>(f.height) * f.width;
  std::vector<float> grid(static_cast<size_t>(k) * cells);
  for (int c = 0; c < k; ++c) {
    for (size_t p = 0; p < cells; ++p) {
      float s = head.linear_bias[c];
      for (int d = 0; d < f.dim; ++d)
        s += head.linear_weight[static_cast<size_t>(c) * f.dim + d] *
             f.data[d * cells + p];
      grid[c * cells + p] = s;
    }
  }
  return grid;
}

}  // namespace

// Appends the EM step's focal loss to loss.jsonl, for the report's curve
// (a resumed run repeats steps; the report keeps the last line of each).
absl::Status AppendLoss(const TrainerOptions& o, int64_t step, double loss) {
  return AppendLine(o.out_dir + "/loss.jsonl",
                    absl::StrFormat("{\"step\":%lld,\"loss\":%.6g}",
                                    static_cast<long long>(step), loss));
}

// Evaluates theta_M and theta_R, with and without the CRF; appends a line to
// metrics.jsonl and writes the confusion matrix of theta_M as a PNG.
absl::StatusOr<nlohmann::json> Evaluate(const TrainerOptions& o,
                                        const SegmentationHead& head,
                                        const std::vector<ValImage>& val,
                                        const std::string& phase,
                                        int64_t step) {
  const int k = head.classes;
  std::vector<ConfusionMatrix> confusion(4, ConfusionMatrix(k, o.classes));
  const bool linear = !head.linear_weight.empty();
  ConfusionMatrix linear_confusion(k, o.classes);
  DenseLabelOptions without_crf, with_crf;
  without_crf.use_crf = false;
  for (const ValImage& v : val) {
    // The class maps at the crop's size, which is the truth's.
    const FeatureMap& f = v.view.features;
    if (linear) {
      ASSIGN_OR_RETURN(const LabelMap labels,
                       DenseLabelsForPixels(LinearScores(head, f), k, f.height,
                                            f.width, v.view.crop, without_crf));
      RETURN_IF_ERROR(linear_confusion.Add(labels, v.truth));
    }
    int variant = 0;
    for (HeadKind kind : {HeadKind::kClusterProbe, HeadKind::kSegmentation}) {
      const std::vector<float> grid = HeadScores(head, kind, f);
      for (const DenseLabelOptions* options : {&without_crf, &with_crf}) {
        ConfusionMatrix& matrix = confusion[variant++];
        if (options->use_crf && !o.eval_crf) continue;
        ASSIGN_OR_RETURN(const LabelMap labels,
                         DenseLabelsForPixels(grid, k, f.height, f.width,
                                              v.view.crop, *options));
        RETURN_IF_ERROR(matrix.Add(labels, v.truth));
      }
    }
  }
  nlohmann::json line = {
      {"step", step},
      {"phase", phase},
      // The paper reports theta_M without CRF, best of run (best.json).
      {"paper_figure", "theta_m"}};
  const char* names[4] = {"theta_m", "theta_m_crf", "theta_r", "theta_r_crf"};
  for (int i = 0; i < 4; ++i) {
    if (!o.eval_crf && i % 2 == 1) continue;
    line[names[i]] = ScoresJson(Score(confusion[i]));
  }
  // The supervised upper bound: no matching, class i is class i.
  if (linear) line["linear"] = ScoresJson(Score(linear_confusion, false));
  const SegmentationScores m = Score(confusion[0]);
  // For the report's confusion matrix with class names.
  line["theta_m_confusion"] =
      MatchedConfusion(confusion[0], m.cluster_to_class);
  ASSIGN_OR_RETURN(
      const std::string png,
      EncodeRgbPng(ConfusionImage(confusion[0], m.cluster_to_class)));
  RETURN_IF_ERROR(CreateDirectories(o.out_dir + "/confusion"));
  RETURN_IF_ERROR(WriteFileAtomically(
      absl::StrCat(o.out_dir, "/confusion/", phase, "_step", step, ".png"),
      png));
  RETURN_IF_ERROR(AppendLine(o.out_dir + "/metrics.jsonl", line.dump()));
  LogInfo(absl::StrFormat(
      "eval %s step %d: theta_M mIoU %.2f acc %.2f, theta_R mIoU %.2f acc "
      "%.2f%s",
      phase, step, line["theta_m"]["miou"].get<double>(),
      line["theta_m"]["accuracy"].get<double>(),
      line["theta_r"]["miou"].get<double>(),
      line["theta_r"]["accuracy"].get<double>(),
      linear ? absl::StrFormat(", linear probe mIoU %.2f acc %.2f",
                               line["linear"]["miou"].get<double>(),
                               line["linear"]["accuracy"].get<double>())
             : ""));
  return line;
}

// The validation set: original views and cropped ground truth.
absl::StatusOr<std::vector<ValImage>> LoadValidationSet(const TrainerOptions& o,
                                                        FeatureSource* source) {
  std::vector<ValImage> val;
  if (o.val_dir.empty()) return val;
  const DatasetDirs val_dirs = FindDatasetDirs(o.val_dir);
  for (const std::string& name : ListImages(val_dirs.images)) {
    ValImage v;
    ASSIGN_OR_RETURN(v.view,
                     LoadView(source, val_dirs, name, o.out_dir + "/cache/val",
                              o.resize, ResizeFilter::kBilinear));
    ASSIGN_OR_RETURN(
        const std::string label_png,
        ReadFile(o.val_dir + "/labels/" +
                 fs::path(name).replace_extension(".png").string()));
    ASSIGN_OR_RETURN(const LabelMap truth, DecodeLabelPng(label_png));
    // As the reference resizes its validation labels.
    v.truth = ResizeAndCropLabels(truth, o.resize, CropMode::kCenter,
                                  LabelResize::kTorchNearest);
    val.push_back(std::move(v));
  }
  LogInfo(absl::StrCat(val.size(), " validation images"));
  return val;
}

}  // namespace primaps
