#include "trainer/feature_cache.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/image/channel_maps.h"
#include "engine/image/label_image.h"

namespace primaps {
namespace fs = std::filesystem;

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

}  // namespace primaps
