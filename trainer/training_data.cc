#include "trainer/training_data.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"

namespace primaps {
namespace fs = std::filesystem;

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

}  // namespace primaps
