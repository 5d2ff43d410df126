#include "trainer/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "client/primaps_client.h"
#include "datasets/dataset_info.h"
#include "engine/checkpoint/pth_reader.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/dense_labels.h"
#include "engine/image/channel_maps.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "engine/primaps.h"
#include "engine/reference_checkpoint.h"
#include "engine/segmentation_head.h"
#include "server/model_repository.h"
#include "trainer/augment.h"
#include "trainer/evaluation.h"
#include "trainer/evaluation_json.h"
#include "trainer/head_trainer.h"
#include "trainer/report.h"

namespace primaps {
namespace fs = std::filesystem;
namespace {

void Log(const std::string& line) {
  std::fprintf(stderr, "primaps-trainer: %s\n", line.c_str());
}

// Where a dataset's images are, and its precomputed PriMaPs masks if any.
struct DatasetDirs {
  std::string images;
  // The reference's precomputed layout (imgs/, pseudos/, gts/, as
  // `primaps-client label --layout=reference` writes it): pseudo labels at
  // the training crop, mask k as id k, background 255. Empty: the server
  // computes the masks.
  std::string masks;
  // Ground truth, when the dataset has it: labels/ at the original size, or
  // gts/ at the training crop in the precomputed layout.
  std::string labels;
  bool labels_cropped = false;
};

DatasetDirs FindDatasetDirs(const std::string& dir) {
  if (fs::is_directory(dir + "/imgs") && fs::is_directory(dir + "/pseudos")) {
    const bool gts = fs::is_directory(dir + "/gts");
    return {dir + "/imgs", dir + "/pseudos", gts ? dir + "/gts" : "", true};
  }
  const bool labels = fs::is_directory(dir + "/labels");
  return {dir + "/images", "", labels ? dir + "/labels" : "", false};
}

std::vector<std::string> ListImages(const std::string& images_dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(images_dir, ec)) {
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The square crop the features describe: short side `resize`, center crop,
// as 8-bit RGB (the server gets exactly these pixels). As the reference:
// training images through Pillow's antialiased resize, validation images
// through torch's bilinear one.
// With torch's filter the crop is float: `tensor` receives the normalized
// image (what the backbone must see, sent as is) and the returned 8-bit
// pixels are its de-normalization (for the CRF).
absl::StatusOr<RgbImage> Crop(const std::string& path, int resize,
                              ResizeFilter filter, FloatImage* tensor) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  ASSIGN_OR_RETURN(const RgbImage rgb, DecodeImage(bytes));
  if (filter == ResizeFilter::kAntialias)
    return ResizeAndCropAntialias(rgb, resize, CropMode::kCenter);
  PreprocessOptions options;
  options.resize = resize;
  ASSIGN_OR_RETURN(NormalizedImage image, Preprocess(rgb, options));
  RgbImage crop = DenormalizeToRgb(image);
  *tensor = FloatImage{image.height, image.width, std::move(image.data)};
  return crop;
}

struct View {
  RgbImage crop;        // original view
  FeatureMap features;  // of the original view
  LabelMap masks;       // PriMaPs mask map (0 = background)
};

// Talks to the servers: features (and masks) for raw crops, spreading
// requests round-robin.
class FeatureSource {
 public:
  FeatureSource(const std::vector<std::string>& servers, int resize)
      : resize_(resize) {
    for (const std::string& s : servers) {
      ClientOptions options;
      options.target = s;
      options.retries = 8;
      clients_.push_back(*PrimapsClient::Create(options));
    }
  }

  absl::StatusOr<v1::FeatureResponse> Features(const RgbImage& crop,
                                               bool masks) {
    v1::FeatureRequest request;
    v1::RawImage* raw = request.mutable_image()->mutable_raw();
    raw->set_width(crop.width);
    raw->set_height(crop.height);
    raw->set_channels(3);
    raw->set_pixels(crop.pixels.data(), crop.pixels.size());
    request.mutable_preprocess()->set_resize(resize_);
    request.set_masks(masks);
    return Send(request);
  }

  // Features of a normalized tensor (the student view, augmented in that
  // space as the reference does, and the validation crops: never
  // requantized to 8 bits).
  absl::StatusOr<v1::FeatureResponse> Features(const FloatImage& image,
                                               bool masks = false) {
    v1::FeatureRequest request;
    request.set_masks(masks);
    v1::NormalizedTensor* t = request.mutable_image()->mutable_tensor();
    t->set_height(image.height);
    t->set_width(image.width);
    t->set_data(image.data.data(), image.data.size() * sizeof(float));
    return Send(request);
  }

  absl::StatusOr<v1::FeatureResponse> Send(const v1::FeatureRequest& request) {
    PrimapsClient* client = clients_[next_++ % clients_.size()].get();
    Begin();
    auto response = client->ExtractFeatures(request);
    End();
    return response;
  }

  // Starts the busy accounting afresh (at the start of the EM steps).
  void ResetBusy() {
    absl::MutexLock lock(&mu_);
    first_ = absl::InfinitePast();
    busy_ = absl::ZeroDuration();
    if (in_flight_ > 0) busy_since_ = absl::Now();
  }

  // Fraction of the time since the first request during which at least one
  // request was outstanding: how busy the trainer keeps the servers.
  double BusyFraction() {
    absl::MutexLock lock(&mu_);
    absl::Duration busy = busy_;
    if (in_flight_ > 0) busy += absl::Now() - busy_since_;
    const absl::Duration total = absl::Now() - first_;
    return total > absl::ZeroDuration() ? absl::FDivDuration(busy, total) : 0;
  }

 private:
  void Begin() {
    absl::MutexLock lock(&mu_);
    if (first_ == absl::InfinitePast()) first_ = absl::Now();
    if (in_flight_++ == 0) busy_since_ = absl::Now();
  }
  void End() {
    absl::MutexLock lock(&mu_);
    if (--in_flight_ == 0) busy_ += absl::Now() - busy_since_;
  }

  const int resize_;
  std::atomic<size_t> next_{0};
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time busy_since_ ABSL_GUARDED_BY(mu_);
  absl::Duration busy_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<PrimapsClient>> clients_;
};

FeatureMap ToFeatureMap(const v1::FeatureResponse& r) {
  FeatureMap f{static_cast<int>(r.dim()),
               static_cast<int>(r.height()),
               static_cast<int>(r.width()),
               {}};
  f.data.resize(r.data().size() / 4);
  std::memcpy(f.data.data(), r.data().data(), f.data.size() * 4);
  return f;
}

// The ground truth of training image `name` at its training crop (as the
// reference's training transforms: Pillow's nearest), or an empty map when
// the image has none.
absl::StatusOr<LabelMap> TrainingTruth(const DatasetDirs& dirs,
                                       const std::string& name, int resize) {
  const std::string path =
      dirs.labels + "/" + fs::path(name).replace_extension(".png").string();
  if (dirs.labels.empty() || !fs::exists(path)) return LabelMap{};
  ASSIGN_OR_RETURN(const std::string png, ReadFile(path));
  auto labels = DecodeLabelPng(png);
  if (!labels.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", labels.status().message()));
  }
  if (dirs.labels_cropped) return *labels;
  return ResizeAndCropLabels(*labels, resize, CropMode::kCenter,
                             LabelResize::kPillowNearest);
}

// A precomputed pseudo-label file as a mask map (0 = background).
absl::StatusOr<LabelMap> PrecomputedMasks(const std::string& path,
                                          const RgbImage& crop) {
  ASSIGN_OR_RETURN(const std::string png, ReadFile(path));
  auto pseudo = DecodeLabelPng(png);
  if (!pseudo.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", pseudo.status().message()));
  }
  if (pseudo->width != crop.width || pseudo->height != crop.height) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is ", pseudo->width, "x", pseudo->height,
        " but the training crop of its image is ", crop.width, "x", crop.height,
        " (pseudo labels must be at the crop, --resize)"));
  }
  for (uint8_t& id : pseudo->labels) {
    if (id == kIgnoreLabel) id = 0;
  }
  return *pseudo;
}

// The original view of image `name`: from the cache, or from the server
// (then cached; features and masks of a frozen backbone never change). The
// masks come from the server, or from the precomputed pseudo labels.
absl::StatusOr<View> LoadView(FeatureSource* source, const DatasetDirs& dirs,
                              const std::string& name,
                              const std::string& cache_dir, int resize,
                              ResizeFilter filter) {
  View view;
  FloatImage tensor;
  ASSIGN_OR_RETURN(view.crop,
                   Crop(dirs.images + "/" + name, resize, filter, &tensor));
  const std::string cache =
      cache_dir + "/" + fs::path(name).stem().string() + ".safetensors";
  if (auto bytes = ReadFile(cache); bytes.ok()) {
    auto file = ParseSafetensors(*bytes);
    if (file.ok() && file->tensors.count("features") &&
        file->tensors.count("masks")) {
      const TensorRecord& f = file->tensors.at("features");
      const TensorRecord& m = file->tensors.at("masks");
      view.features =
          FeatureMap{static_cast<int>(f.shape[0]), static_cast<int>(f.shape[1]),
                     static_cast<int>(f.shape[2]), Float32Values(f)};
      view.masks =
          LabelMap{static_cast<int>(m.shape[1]), static_cast<int>(m.shape[0]),
                   std::vector<uint8_t>(m.data.begin(), m.data.end())};
      return view;
    }
  }
  const bool precomputed = !dirs.masks.empty();
  ASSIGN_OR_RETURN(const v1::FeatureResponse r,
                   tensor.data.empty()
                       ? source->Features(view.crop, /*masks=*/!precomputed)
                       : source->Features(tensor, /*masks=*/!precomputed));
  view.features = ToFeatureMap(r);
  if (precomputed) {
    ASSIGN_OR_RETURN(
        view.masks,
        PrecomputedMasks(dirs.masks + "/" +
                             fs::path(name).replace_extension(".png").string(),
                         view.crop));
  } else {
    view.masks = LabelMap{static_cast<int>(r.masks().width()),
                          static_cast<int>(r.masks().height()),
                          std::vector<uint8_t>(r.masks().labels().begin(),
                                               r.masks().labels().end())};
  }
  SafetensorsFile file;
  file.tensors["features"] = MakeFloat32(
      {view.features.dim, view.features.height, view.features.width},
      view.features.data);
  TensorRecord masks;
  masks.dtype = DType::kU8;
  masks.shape = {view.masks.height, view.masks.width};
  masks.data.assign(view.masks.labels.begin(), view.masks.labels.end());
  file.tensors["masks"] = masks;
  RETURN_IF_ERROR(WriteFileAtomically(cache, SerializeSafetensors(file)));
  return view;
}

// Features cached on disk (a safetensors file with "features"), or nullopt
// when the file is missing or unreadable (then they are fetched again).
std::optional<FeatureMap> CachedFeatures(const std::string& cache) {
  auto bytes = ReadFile(cache);
  if (!bytes.ok()) return std::nullopt;
  auto file = ParseSafetensors(*bytes);
  if (!file.ok() || file->tensors.count("features") == 0) return std::nullopt;
  const TensorRecord& f = file->tensors.at("features");
  return FeatureMap{static_cast<int>(f.shape[0]), static_cast<int>(f.shape[1]),
                    static_cast<int>(f.shape[2]), Float32Values(f)};
}

absl::Status WriteCachedFeatures(const std::string& cache,
                                 const FeatureMap& features) {
  SafetensorsFile file;
  file.tensors["features"] = MakeFloat32(
      {features.dim, features.height, features.width}, features.data);
  return WriteFileAtomically(cache, SerializeSafetensors(file));
}

// The mirrored original view's features, for the teacher when the student
// is flipped: from the cache, or from the server (then cached).
absl::StatusOr<FeatureMap> FlippedFeatures(FeatureSource* source,
                                           const View& view,
                                           const std::string& cache) {
  if (std::optional<FeatureMap> cached = CachedFeatures(cache))
    return *std::move(cached);
  ASSIGN_OR_RETURN(const v1::FeatureResponse r,
                   source->Features(FlipHorizontal(view.crop), false));
  FeatureMap features = ToFeatureMap(r);
  RETURN_IF_ERROR(WriteCachedFeatures(cache, features));
  return features;
}

// One training image of a step. As in the reference, the flip applies to the
// image before both views are taken: the teacher's features and the masks
// are those of the mirrored image when the student is mirrored.
struct BatchItem {
  FeatureMap teacher_features;
  LabelMap masks;  // PriMaPs masks, oriented like the views
  FeatureMap student_features;
  LabelMap truth;  // ground truth for the linear probe, oriented likewise
};

// Fetches a batch concurrently (original views from cache or server,
// student views always from the server).
absl::StatusOr<std::vector<BatchItem>> FetchBatch(
    FeatureSource* source, ThreadPool* pool, const TrainerOptions& o,
    const std::vector<std::string>& names, uint32_t seed) {
  std::vector<absl::StatusOr<BatchItem>> items(
      names.size(), absl::UnknownError("not fetched"));
  absl::BlockingCounter done(static_cast<int>(names.size()));
  const std::string cache_dir = o.out_dir + "/cache/train";
  for (size_t i = 0; i < names.size(); ++i) {
    pool->Schedule([&, i] {
      items[i] = [&]() -> absl::StatusOr<BatchItem> {
        ASSIGN_OR_RETURN(
            View view, LoadView(source, FindDatasetDirs(o.train_dir), names[i],
                                cache_dir, o.resize, ResizeFilter::kAntialias));
        std::mt19937 rng(seed * 7919u + static_cast<uint32_t>(i));
        const StudentDraws draws = DrawStudent(&rng);
        BatchItem item;
        if (o.linear_learning_rate > 0) {
          ASSIGN_OR_RETURN(
              item.truth,
              TrainingTruth(FindDatasetDirs(o.train_dir), names[i], o.resize));
          if (draws.flip && !item.truth.labels.empty())
            item.truth = FlipHorizontal(item.truth);
        }
        RgbImage crop;
        if (draws.flip) {
          ASSIGN_OR_RETURN(
              item.teacher_features,
              FlippedFeatures(source, view,
                              absl::StrCat(cache_dir, "/",
                                           fs::path(names[i]).stem().string(),
                                           ".flipped.safetensors")));
          item.masks = FlipHorizontal(view.masks);
          crop = FlipHorizontal(view.crop);
        } else {
          item.teacher_features = std::move(view.features);
          item.masks = std::move(view.masks);
          crop = std::move(view.crop);
        }
        ASSIGN_OR_RETURN(
            const v1::FeatureResponse r,
            source->Features(StudentAugment(Normalize(crop), draws)));
        item.student_features = ToFeatureMap(r);
        return item;
      }();
      done.DecrementCount();
    });
  }
  done.Wait();
  std::vector<BatchItem> out;
  for (auto& item : items) {
    if (!item.ok()) return item.status();
    out.push_back(*std::move(item));
  }
  return out;
}

// E-step: each mask takes theta_M's majority class on the teacher's view.
absl::StatusOr<LabelMap> PseudoTarget(const SegmentationHead& head,
                                      const BatchItem& item) {
  const LabelMap prior =
      HeadClassMap(head, HeadKind::kClusterProbe, item.teacher_features,
                   item.masks.height, item.masks.width);
  return PseudoLabels(item.masks, &prior);
}

struct ValImage {
  View view;
  LabelMap truth;
};

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
  Log(absl::StrFormat(
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
      Log(absl::StrCat("cannot remove the old checkpoint ", all[i], ": ",
                       ec.message()));
  }
  return absl::OkStatus();
}

std::string NewestCheckpoint(const TrainerOptions& o) {
  const std::vector<std::string> all = CheckpointFiles(o);
  return all.empty() ? "" : all.back();
}

void Push(const TrainerOptions& o, FeatureSource* source,
          const HeadTrainer& trainer) {
  v1::LoadCheckpointRequest request;
  request.set_data(SerializeHeadCheckpoint(trainer.Head()));
  for (size_t i = 0; i < o.servers.size(); ++i) {
    ClientOptions options;
    options.target = o.servers[i];
    options.admin_token = o.admin_token;
    auto client = PrimapsClient::Create(options);
    if (!client.ok()) {
      Log(absl::StrCat("push to ", o.servers[i],
                       " failed: ", client.status().ToString()));
      continue;
    }
    auto response = (*client)->LoadCheckpoint(request);
    if (response.ok()) {
      Log(absl::StrCat("pushed step ", trainer.step(), " to ", o.servers[i],
                       ": head version ", response->model().head_version()));
    } else {
      Log(absl::StrCat("push to ", o.servers[i],
                       " failed: ", response.status().ToString()));
    }
  }
}

// theta_M's mIoU of the newest published version; nullopt when there is
// none or it was published without figures, an error naming the file when
// its evaluation.json is unreadable.
absl::StatusOr<std::optional<double>> LastPublishedMiou(
    const std::string& dir) {
  auto source = DirectoryModelSource(dir);
  auto versions = source->ListVersions();
  if (!versions.ok() || versions->empty()) return std::nullopt;
  const std::string path =
      absl::StrCat(source->Describe(versions->back()), "/evaluation.json");
  if (!std::filesystem::exists(path)) return std::nullopt;
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  ASSIGN_OR_RETURN(const double miou, ThetaMMiou(bytes, path));
  return miou;
}

// Publishes the head into o.publish_dir with `evaluation` (may be null),
// unless the gate finds it worse than the last published version.
absl::Status Publish(const TrainerOptions& o, const HeadTrainer& trainer,
                     const nlohmann::json& evaluation) {
  if (o.publish_max_miou_drop >= 0 && evaluation.contains("theta_m")) {
    ASSIGN_OR_RETURN(const double miou,
                     ThetaMMiou(evaluation, "the evaluation to publish"));
    ASSIGN_OR_RETURN(const std::optional<double> last,
                     LastPublishedMiou(o.publish_dir));
    if (last && miou < *last - o.publish_max_miou_drop) {
      Log(absl::StrFormat(
          "step %d not published: theta_M mIoU %.2f is more than %.2f below "
          "the last published %.2f",
          trainer.step(), miou, o.publish_max_miou_drop, *last));
      return absl::OkStatus();
    }
  }
  ASSIGN_OR_RETURN(
      const uint64_t version,
      PublishToDirectory(o.publish_dir, SerializeHeadCheckpoint(trainer.Head()),
                         evaluation.is_null() ? "" : evaluation.dump(2)));
  Log(absl::StrCat("published step ", trainer.step(), " as version ", version,
                   " in ", o.publish_dir));
  return absl::OkStatus();
}

// Steps from the schedules given in epochs.
TrainerOptions ResolveEpochs(TrainerOptions o, size_t train_images) {
  const int per_epoch =
      std::max<int>(1, static_cast<int>(train_images) / std::max(1, o.batch));
  if (o.epochs > 0) o.steps = o.epochs * per_epoch;
  if (o.baseline_epochs > 0) o.baseline_steps = o.baseline_epochs * per_epoch;
  if (o.eval_every_epoch) o.eval_every = per_epoch;
  return o;
}

// A permutation of `n` indices fixed by `seed`.
std::vector<size_t> Shuffled(size_t n, uint32_t seed) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  return order;
}

// The images of step `step` as the reference's loader gives them: epochs of
// floor(n / batch) steps (the last partial batch dropped), each a fresh
// permutation fixed by the seed, so a resumed run sees the same batches.
std::vector<size_t> BatchIndices(int64_t step, size_t n, int batch,
                                 uint32_t seed) {
  const int64_t per_epoch =
      std::max<int64_t>(1, static_cast<int64_t>(n) / batch);
  const std::vector<size_t> order =
      Shuffled(n, seed + static_cast<uint32_t>(step / per_epoch));
  std::vector<size_t> out;
  for (int b = 0; b < batch; ++b)
    out.push_back(order[((step % per_epoch) * batch + b) % n]);
  return out;
}

}  // namespace

namespace {

// What the phases of a run share.
struct TrainingRun {
  const TrainerOptions& o;
  DatasetDirs train_dirs;
  std::vector<std::string> train;  // image names
  FeatureSource* source;
  ThreadPool* pool;

  absl::StatusOr<View> TrainView(const std::string& name) const {
    return LoadView(source, train_dirs, name, o.out_dir + "/cache/train",
                    o.resize, ResizeFilter::kAntialias);
  }
};

// Evaluates the current head and keeps the best of run.
using Evaluator =
    std::function<absl::Status(const std::string& phase, int64_t step)>;

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
  Log(absl::StrCat(val.size(), " validation images"));
  return val;
}

// The head trainer for the backbone the servers run, its feature dim from
// the first training image.
absl::StatusOr<std::unique_ptr<HeadTrainer>> CreateHeadTrainer(
    const TrainingRun& run) {
  const TrainerOptions& o = run.o;
  ASSIGN_OR_RETURN(const View first, run.TrainView(run.train[0]));
  HeadTrainerOptions head_options;
  head_options.classes = o.classes;
  head_options.dim = first.features.dim;
  head_options.learning_rate = o.learning_rate;
  head_options.focal_gamma = o.focal_gamma;
  if (o.linear_learning_rate > 0) {
    if (run.train_dirs.labels.empty()) {
      Log("no ground truth for the training images (labels/ or gts/): no "
          "linear probe");
    } else {
      head_options.linear_learning_rate = o.linear_learning_rate;
    }
  }
  ASSIGN_OR_RETURN(const v1::FeatureResponse probe,
                   run.source->Features(first.crop, false));
  head_options.backbone = probe.model().backbone();
  head_options.dino_block = probe.model().dino_block();
  return HeadTrainer::Create(head_options);
}

// PCA initialization on the features of shuffled training images, as the
// reference draws its PCA batches.
absl::Status InitializeFromPca(const TrainingRun& run, HeadTrainer* trainer) {
  const TrainerOptions& o = run.o;
  const int n = std::min<int>(static_cast<int>(run.train.size()),
                              o.pca_images > 0 ? o.pca_images : o.batch);
  const std::vector<size_t> order =
      Shuffled(run.train.size(), o.seed + 1000003u);
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(View v, run.TrainView(run.train[order[i]]));
    RETURN_IF_ERROR(trainer->AddPcaFeatures(v.features));
  }
  RETURN_IF_ERROR(trainer->FinishPca());
  Log(absl::StrCat("PCA initialization on ", n, " images"));
  return absl::OkStatus();
}

// The reference's --cluster-ckpt-path: theta_M's directions of
// o.init_checkpoint (a baseline .ckpt's cluster centres) into both heads.
absl::Status InitializeFromCheckpoint(const TrainerOptions& o,
                                      HeadTrainer* trainer) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(o.init_checkpoint));
  const SegmentationHead current = trainer->Head();
  auto head = ParseAnyHeadCheckpoint(bytes, current.backbone, current.dim);
  if (!head.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--init_checkpoint ",
                                                   o.init_checkpoint, ": ",
                                                   head.status().message()));
  }
  if (head->classes != current.classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--init_checkpoint ", o.init_checkpoint, " has ", head->classes,
        " classes; --classes is ", current.classes));
  }
  RETURN_IF_ERROR(trainer->InitFromPrototypes(head->theta_m.v));
  const auto from = head->extra_metadata.find("theta_m_from");
  Log(absl::StrCat(
      "initialized from ", o.init_checkpoint, " (",
      from != head->extra_metadata.end() ? from->second : "theta_m", ")"));
  return absl::OkStatus();
}

// The cosine k-means baseline on theta_R (and the linear probe, when
// there is ground truth), validated every eval_every steps and at its end
// as the reference's baseline run is (phase "baseline", its own step
// count); then fresh optimizer moments and a fresh linear probe for
// PriMaPs-EM.
absl::Status TrainBaseline(const TrainingRun& run, HeadTrainer* trainer,
                           const Evaluator& evaluate, bool have_val) {
  const TrainerOptions& o = run.o;
  for (int s = 0; s < o.baseline_steps; ++s) {
    std::vector<FeatureMap> batch;
    std::vector<TrainingSample> labelled;
    for (size_t i :
         BatchIndices(s, run.train.size(), o.batch, o.seed + 2000003u)) {
      ASSIGN_OR_RETURN(View v, run.TrainView(run.train[i]));
      if (trainer->has_linear_probe()) {
        ASSIGN_OR_RETURN(LabelMap truth,
                         TrainingTruth(run.train_dirs, run.train[i], o.resize));
        if (!truth.labels.empty())
          labelled.push_back({v.features, std::move(truth)});
      }
      batch.push_back(std::move(v.features));
    }
    RETURN_IF_ERROR(trainer->BaselineStep(batch).status());
    if (!labelled.empty())
      RETURN_IF_ERROR(trainer->LinearStep(labelled).status());
    const bool last = s + 1 == o.baseline_steps;
    if (have_val &&
        (last || (o.eval_every > 0 && (s + 1) % o.eval_every == 0))) {
      RETURN_IF_ERROR(evaluate("baseline", s + 1));
    }
  }
  trainer->ResetOptimizer();
  trainer->ResetLinearProbe();
  Log(absl::StrCat(o.baseline_steps, " baseline steps"));
  return absl::OkStatus();
}

// PriMaPs-EM from the trainer's step to o.steps, with checkpoints, pushes
// and evaluations as the options ask.
absl::Status TrainPrimapsEm(const TrainingRun& run, HeadTrainer* trainer,
                            const Evaluator& evaluate, bool have_val,
                            const std::function<absl::Status()>& publish) {
  const TrainerOptions& o = run.o;
  auto batch_names = [&](int64_t step) {
    std::vector<std::string> names;
    for (size_t i : BatchIndices(step, run.train.size(), o.batch, o.seed))
      names.push_back(run.train[i]);
    return names;
  };
  const absl::Time start = absl::Now();
  absl::Time last_log = start;
  const int64_t first_step = trainer->step();
  // Requests for the next two batches are out while the current step runs,
  // so the servers always have work queued.
  constexpr size_t kBatchesAhead = 2;
  std::deque<std::future<absl::StatusOr<std::vector<BatchItem>>>> ahead;
  int64_t requested = trainer->step();
  auto fill = [&] {
    while (ahead.size() < kBatchesAhead && requested < o.steps) {
      const int64_t step = requested++;
      ahead.push_back(std::async(std::launch::async, [&, step] {
        return FetchBatch(run.source, run.pool, o, batch_names(step),
                          o.seed + static_cast<uint32_t>(step));
      }));
    }
  };
  fill();
  double loss = 0;
  run.source->ResetBusy();
  // Where a step's time goes: waiting for the servers' features, the E-step
  // (theta_M class maps and mask votes), the M-step (focal loss, Adam).
  absl::Duration wait_time, e_step_time, m_step_time;
  while (trainer->step() < o.steps) {
    if (o.stop != nullptr && o.stop->load()) {
      Log("stopping: writing a checkpoint");
      for (auto& f : ahead) f.wait();
      RETURN_IF_ERROR(SaveCheckpoint(o, *trainer));
      return absl::CancelledError(absl::StrCat(
          "stopped at step ", trainer->step(), "; rerun with --resume"));
    }
    absl::Time t = absl::Now();
    ASSIGN_OR_RETURN(std::vector<BatchItem> batch, ahead.front().get());
    ahead.pop_front();
    fill();
    wait_time += absl::Now() - t;
    t = absl::Now();
    const SegmentationHead head = trainer->Head();
    std::vector<TrainingSample> samples, labelled;
    for (BatchItem& item : batch) {
      ASSIGN_OR_RETURN(LabelMap target, PseudoTarget(head, item));
      samples.push_back({std::move(item.student_features), std::move(target)});
      if (!item.truth.labels.empty())
        labelled.push_back({item.teacher_features, std::move(item.truth)});
    }
    e_step_time += absl::Now() - t;
    t = absl::Now();
    ASSIGN_OR_RETURN(loss, trainer->EmStep(samples));
    RETURN_IF_ERROR(AppendLoss(o, trainer->step(), loss));
    // The linear probe on the teacher's view and the ground truth, as the
    // reference trains it in the same step.
    if (trainer->has_linear_probe() && !labelled.empty())
      RETURN_IF_ERROR(trainer->LinearStep(labelled).status());
    m_step_time += absl::Now() - t;
    const int64_t step = trainer->step();
    if (absl::Now() - last_log >= o.log_every || step == o.steps) {
      last_log = absl::Now();
      const double rate =
          (step - first_step) /
          std::max(1e-9, absl::ToDoubleSeconds(absl::Now() - start));
      Log(absl::StrFormat("step %d/%d loss %.4f %.2f steps/s ETA %.0fs", step,
                          o.steps, loss, rate,
                          (o.steps - step) / std::max(rate, 1e-9)));
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0)
      RETURN_IF_ERROR(SaveCheckpoint(o, *trainer));
    if (o.push_every > 0 && step % o.push_every == 0)
      Push(o, run.source, *trainer);
    const int publish_every =
        o.publish_every > 0 ? o.publish_every : o.checkpoint_every;
    if (!o.publish_dir.empty() && publish_every > 0 &&
        step % publish_every == 0 && step != o.steps) {
      RETURN_IF_ERROR(publish());
    }
    if (o.eval_every > 0 && step % o.eval_every == 0 && have_val &&
        step != o.steps) {
      RETURN_IF_ERROR(evaluate("em", step));
    }
  }
  if (trainer->step() > first_step) {
    const double n = static_cast<double>(trainer->step() - first_step);
    Log(
        absl::StrFormat("per step: %.1f ms waiting for features, %.1f ms "
                        "E-step, %.1f ms M-step; feature requests outstanding "
                        "%.0f%% of the time",
                        absl::ToDoubleMilliseconds(wait_time) / n,
                        absl::ToDoubleMilliseconds(e_step_time) / n,
                        absl::ToDoubleMilliseconds(m_step_time) / n,
                        100 * run.source->BusyFraction()));
  }
  return absl::OkStatus();
}

}  // namespace

// The backbone is the first server's, named in the answer to a small
// features request.
absl::StatusOr<TrainerOptions> ResolveCropSize(TrainerOptions o) {
  if (o.resize > 0) return o;
  ClientOptions options;
  options.target = o.servers[0];
  options.retries = 8;
  ASSIGN_OR_RETURN(std::unique_ptr<PrimapsClient> client,
                   PrimapsClient::Create(options));
  v1::FeatureRequest request;
  v1::RawImage* raw = request.mutable_image()->mutable_raw();
  // 112: a multiple of every patch size (8, 14, 16).
  const std::string gray(112 * 112 * 3, '\x80');
  raw->set_width(112);
  raw->set_height(112);
  raw->set_channels(3);
  raw->set_pixels(gray);
  request.mutable_preprocess()->set_resize(112);
  auto response = client->ExtractFeatures(request);
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        absl::StrCat("asking ", o.servers[0], " its backbone: ",
                                     response.status().message()));
  }
  const std::string& backbone = response->model().backbone();
  o.resize = absl::StartsWith(backbone, "dinov2") ? 322 : 320;
  Log(absl::StrCat("crop and validation resize ", o.resize, " for ", backbone));
  return o;
}

absl::Status RunTrainer(const TrainerOptions& options) {
  if (options.servers.empty())
    return absl::InvalidArgumentError("no servers (--server)");
  if (options.classes < 1 || options.batch < 1 || options.steps < 0) {
    return absl::InvalidArgumentError(
        "--classes and --batch must be >= 1, --steps >= 0");
  }
  const DatasetDirs train_dirs = FindDatasetDirs(options.train_dir);
  std::vector<std::string> train = ListImages(train_dirs.images);
  if (train.empty())
    return absl::NotFoundError(
        absl::StrCat("no images in ", train_dirs.images));
  if (!train_dirs.masks.empty())
    Log(absl::StrCat("precomputed pseudo labels from ", train_dirs.masks));
  ASSIGN_OR_RETURN(TrainerOptions with_crop, ResolveCropSize(options));
  const TrainerOptions o = ResolveEpochs(std::move(with_crop), train.size());
  Log(absl::StrCat(train.size(), " training images: ", o.baseline_steps,
                   " baseline steps, ", o.steps, " PriMaPs-EM steps of ",
                   o.batch, " images"));
  RETURN_IF_ERROR(CreateDirectories(o.out_dir + "/cache/train"));
  RETURN_IF_ERROR(CreateDirectories(o.out_dir + "/cache/val"));
  FeatureSource source(o.servers, o.resize);
  ThreadPool pool(std::max(1, o.fetch_concurrency));
  const TrainingRun run{o, train_dirs, std::move(train), &source, &pool};

  ASSIGN_OR_RETURN(const std::vector<ValImage> val,
                   LoadValidationSet(o, &source));
  ASSIGN_OR_RETURN(std::unique_ptr<HeadTrainer> trainer,
                   CreateHeadTrainer(run));
  ASSIGN_OR_RETURN(BestOfRun best, BestOfRun::Load(o.out_dir));
  nlohmann::json last_evaluation;  // published with the head
  const Evaluator evaluate = [&](const std::string& phase,
                                 int64_t step) -> absl::Status {
    ASSIGN_OR_RETURN(last_evaluation,
                     Evaluate(o, trainer->Head(), val, phase, step));
    return best.Offer(last_evaluation, trainer->Head());
  };
  // Publishes the current head with figures for its own step.
  const std::function<absl::Status()> publish = [&]() -> absl::Status {
    if (!val.empty() && (!last_evaluation.contains("step") ||
                         last_evaluation["step"] != trainer->step())) {
      RETURN_IF_ERROR(evaluate("em", trainer->step()));
    }
    return Publish(o, *trainer, last_evaluation);
  };

  const std::string newest = o.resume ? NewestCheckpoint(o) : "";
  if (!newest.empty()) {
    ASSIGN_OR_RETURN(const std::string bytes, ReadFile(newest));
    RETURN_IF_ERROR(trainer->RestoreCheckpoint(bytes));
    Log(absl::StrCat("resumed from ", newest, " at step ", trainer->step()));
  } else if (!o.init_checkpoint.empty()) {
    RETURN_IF_ERROR(InitializeFromCheckpoint(o, trainer.get()));
    if (!val.empty()) RETURN_IF_ERROR(evaluate("init_checkpoint", 0));
  } else {
    RETURN_IF_ERROR(InitializeFromPca(run, trainer.get()));
    if (!val.empty()) RETURN_IF_ERROR(evaluate("pca_init", 0));
    if (o.baseline_steps > 0) {
      RETURN_IF_ERROR(
          TrainBaseline(run, trainer.get(), evaluate, !val.empty()));
    }
  }
  RETURN_IF_ERROR(
      TrainPrimapsEm(run, trainer.get(), evaluate, !val.empty(), publish));

  RETURN_IF_ERROR(SaveCheckpoint(o, *trainer));
  if (!val.empty()) RETURN_IF_ERROR(evaluate("em", trainer->step()));
  if (!o.publish_dir.empty()) RETURN_IF_ERROR(publish());
  // The last step may already have been pushed.
  if (o.push_every > 0 && trainer->step() % o.push_every != 0) {
    Push(o, &source, *trainer);
  }
  Log(absl::StrCat("done at step ", trainer->step(), "; checkpoint ",
                   CheckpointPath(o, trainer->step())));
  return absl::OkStatus();
}

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
  Log(absl::StrCat("evaluate: the heads of ", heads_from, ", ", head.classes,
                   " classes, ", head.backbone));
  const int resize =
      o.resize > 0 ? o.resize
                   : (absl::StartsWith(head.backbone, "dinov2") ? 322 : 320);
  const std::string cache = absl::StrCat(o.out_dir, "/cache/evaluate_", resize,
                                         o.flip_tta ? "_flip" : "");
  RETURN_IF_ERROR(CreateDirectories(cache));
  const DatasetDirs dirs = FindDatasetDirs(o.val_dir);
  const std::vector<std::string> names = ListImages(dirs.images);
  if (names.empty())
    return absl::InvalidArgumentError(o.val_dir + "/images holds no images");
  FeatureSource source(o.servers, resize);
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
      Log(
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
  Log(absl::StrCat("evaluate: wrote ", o.out_dir, "/evaluation.json and ",
                   o.out_dir, "/report/REPORT.md"));
  return absl::OkStatus();
}

}  // namespace primaps
