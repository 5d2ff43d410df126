#include "trainer/evaluate_command.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "client/primaps_client.h"
#include "datasets/dataset_info.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "engine/reference_checkpoint.h"
#include "engine/segmentation_head.h"
#include "trainer/feature_cache.h"
#include "trainer/feature_source.h"
#include "trainer/report.h"
#include "trainer/run_evaluation.h"
#include "trainer/training_data.h"

namespace primaps {
namespace fs = std::filesystem;

namespace {

// The heads to score: a head safetensors file, or the heads of the
// reference's train.py checkpoint.
absl::StatusOr<SegmentationHead> LoadEvaluatedHead(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  auto head = ParseAnyHeadCheckpoint(bytes, "", 0);
  if (!head.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", head.status().message()));
  }
  return head;
}

// Each head's "per_class": IoU by class name (the dataset's, else "class
// K"; null for a class absent from the set), beside the "class_iou" array.
absl::Status NamePerClass(const std::string& dataset, nlohmann::json* line) {
  std::vector<std::string> names;
  if (!dataset.empty()) {
    ASSIGN_OR_RETURN(const DatasetInfo* info, FindDataset(dataset));
    names = info->class_names;
  }
  for (auto& [key, figures] : line->items()) {
    if (!figures.is_object() || !figures.contains("class_iou")) continue;
    nlohmann::json per_class = nlohmann::json::object();
    const nlohmann::json& ious = figures["class_iou"];
    for (size_t k = 0; k < ious.size(); ++k) {
      per_class[k < names.size() ? names[k] : absl::StrCat("class ", k)] =
          ious[k];
    }
    figures["per_class"] = std::move(per_class);
  }
  return absl::OkStatus();
}

// The head the first server serves (AdminService.GetCheckpoint), and a line
// that names it.
absl::StatusOr<std::pair<SegmentationHead, std::string>> ServedHead(
    const std::string& server, const std::string& admin_token) {
  ClientOptions options;
  options.target = server;
  options.admin_token = admin_token;
  ASSIGN_OR_RETURN(std::unique_ptr<PrimapsClient> client,
                   PrimapsClient::Create(options));
  auto response = client->GetCheckpoint();
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        absl::StrCat("the head of ", server, ": ",
                                     response.status().message()));
  }
  ASSIGN_OR_RETURN(SegmentationHead head,
                   ParseHeadCheckpoint(response->data(), "", 0));
  return std::make_pair(
      std::move(head),
      absl::StrCat(server, " head version ", response->model().head_version(),
                   " (", response->model().source(), ")"));
}

// A normalized 3 x h x w tensor, mirrored left to right.
FloatImage FlipTensor(const FloatImage& image) {
  FloatImage out = image;
  for (int row = 0; row < 3 * image.height; ++row) {
    std::reverse(out.data.begin() + static_cast<size_t>(row) * image.width,
                 out.data.begin() + static_cast<size_t>(row + 1) * image.width);
  }
  return out;
}

// test.py's features: those of the crop, or with flip_tta the mean of those
// and the mirrored crop's features mirrored back. Cached in `cache` (so an
// interrupted evaluation resumes where it stopped).
absl::StatusOr<FeatureMap> EvaluationFeatures(FeatureSource* source,
                                              const FloatImage& tensor,
                                              bool flip_tta,
                                              const std::string& cache) {
  if (std::optional<FeatureMap> cached = CachedFeatures(cache))
    return *std::move(cached);
  ASSIGN_OR_RETURN(const v1::FeatureResponse r, source->Features(tensor));
  FeatureMap features = ToFeatureMap(r);
  if (flip_tta) {
    ASSIGN_OR_RETURN(const v1::FeatureResponse m,
                     source->Features(FlipTensor(tensor)));
    const FeatureMap mirrored = ToFeatureMap(m);
    const int h = features.height, w = features.width;
    for (int d = 0; d < features.dim; ++d) {
      for (int y = 0; y < h; ++y) {
        float* row = &features.data[(static_cast<size_t>(d) * h + y) * w];
        const float* back =
            &mirrored.data[(static_cast<size_t>(d) * h + y) * w];
        for (int x = 0; x < w; ++x) row[x] = (row[x] + back[w - 1 - x]) / 2;
      }
    }
  }
  RETURN_IF_ERROR(WriteCachedFeatures(cache, features));
  return features;
}

}  // namespace

absl::Status RunEvaluate(const EvaluateOptions& o) {
  if (o.servers.empty() || o.val_dir.empty() || o.out_dir.empty()) {
    return absl::InvalidArgumentError(
        "evaluate needs --server, --val and --out");
  }
  SegmentationHead head;
  std::string heads_from = o.checkpoint;
  if (!o.checkpoint.empty()) {
    ASSIGN_OR_RETURN(head, LoadEvaluatedHead(o.checkpoint));
  } else {
    ASSIGN_OR_RETURN(std::tie(head, heads_from),
                     ServedHead(o.servers[0], o.admin_token));
  }
  LogInfo(absl::StrCat("evaluate: the heads of ", heads_from, ", ",
                       head.classes, " classes, ", head.backbone));
  const int resize =
      o.resize > 0 ? o.resize
                   : (absl::StartsWith(head.backbone, "dinov2") ? 322 : 320);
  const std::string cache = absl::StrCat(
      o.out_dir, "/cache/evaluate_", resize, o.flip_tta ? "_flip" : "",
      head.extra_metadata.count("projection_digest") ? "_code" : "");
  RETURN_IF_ERROR(CreateDirectories(cache));
  const DatasetDirs dirs = FindDatasetDirs(o.val_dir);
  const std::vector<std::string> names = ListImages(dirs.images);
  if (names.empty())
    return absl::InvalidArgumentError(o.val_dir + "/images holds no images");
  // Heads trained on a projection (STEGO's) read its code.
  const bool on_projection = head.extra_metadata.count("projection_digest") > 0;
  FeatureSource source(
      o.servers, resize,
      on_projection ? v1::FEATURE_KIND_PROJECTION : v1::FEATURE_KIND_BACKBONE);
  std::vector<ValImage> val;
  const absl::Time start = absl::Now();
  absl::Time last_log = start;
  for (const std::string& name : names) {
    ValImage v;
    FloatImage tensor;
    ASSIGN_OR_RETURN(v.view.crop, Crop(dirs.images + "/" + name, resize,
                                       ResizeFilter::kBilinear, &tensor));
    ASSIGN_OR_RETURN(
        v.view.features,
        EvaluationFeatures(
            &source, tensor, o.flip_tta,
            absl::StrCat(cache, "/", fs::path(name).stem().string(),
                         ".safetensors")));
    if (v.view.features.dim != head.dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the server's features have ", v.view.features.dim,
          " channels; the head reads ", head.dim, " (", head.backbone, ")"));
    }
    ASSIGN_OR_RETURN(
        const std::string label_png,
        ReadFile(o.val_dir + "/labels/" +
                 fs::path(name).replace_extension(".png").string()));
    ASSIGN_OR_RETURN(const LabelMap truth, DecodeLabelPng(label_png));
    // test.py: nearest-neighbour labels at the crop; ids >= classes are
    // ignored (ConfusionMatrix counts only ids below the head's classes).
    v.truth = ResizeAndCropLabels(truth, resize, CropMode::kCenter,
                                  LabelResize::kTorchNearest);
    val.push_back(std::move(v));
    const absl::Time now = absl::Now();
    if (now - last_log >= o.log_every || val.size() == names.size()) {
      last_log = now;
      const double rate = val.size() / absl::ToDoubleSeconds(now - start);
      LogInfo(
          absl::StrFormat("evaluate: %d/%d images, %.2f images/s, about %.0f s "
                          "left",
                          val.size(), names.size(), rate,
                          (names.size() - val.size()) / std::max(rate, 1e-9)));
    }
  }
  TrainerOptions scoring;
  scoring.out_dir = o.out_dir;
  scoring.classes = head.classes;
  scoring.eval_crf = o.crf;
  ASSIGN_OR_RETURN(nlohmann::json line,
                   Evaluate(scoring, head, val, "evaluate", 0));
  line["checkpoint"] = heads_from;
  line["backbone"] = head.backbone;
  line["images"] = val.size();
  line["resize"] = resize;
  line["flip_tta"] = o.flip_tta;
  RETURN_IF_ERROR(NamePerClass(o.dataset, &line));
  RETURN_IF_ERROR(
      WriteFileAtomically(o.out_dir + "/evaluation.json", line.dump(2) + "\n"));
  RETURN_IF_ERROR(WriteEvaluationReport(o.out_dir, o.dataset));
  LogInfo(absl::StrCat("evaluate: wrote ", o.out_dir, "/evaluation.json and ",
                       o.out_dir, "/report/REPORT.md"));
  return absl::OkStatus();
}

}  // namespace primaps
