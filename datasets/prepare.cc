#include "datasets/prepare.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "datasets/mat_file.h"
#include "engine/image/image_header.h"
#include "engine/image/label_image.h"

namespace primaps {
namespace fs = std::filesystem;
namespace {

// Images of an official layout are never larger than this (Potsdam tiles and
// COCO photos are far smaller; a Cityscapes PNG is about 2.5 MB).
constexpr uint64_t kMaxFileBytes = uint64_t{256} << 20;

struct Size {
  int width = 0;
  int height = 0;
};

// Places the encoded image at `dest`: a hard link when source and
// destination share a file system, else a copy; atomically either way.
absl::Status LinkOrCopy(const std::string& source, const std::string& dest,
                        const std::string& bytes) {
  const std::string temp = dest + ".linking";
  std::error_code ec;
  fs::remove(temp, ec);
  fs::create_hard_link(source, temp, ec);
  if (!ec) {
    fs::rename(temp, dest, ec);
    if (!ec) return absl::OkStatus();
    fs::remove(temp, ec);
  }
  return WriteFileAtomically(dest, bytes);
}

// Writes the item's image; returns its size.
absl::StatusOr<Size> WriteImage(const DatasetItem& item,
                                const std::string& dest) {
  if (absl::EndsWith(item.image_path, ".mat")) {
    ASSIGN_OR_RETURN(const RgbImage image,
                     ReadMatImage(item.image_path, "img"));
    ASSIGN_OR_RETURN(const std::string png, EncodeRgbPng(image));
    RETURN_IF_ERROR(WriteFileAtomically(dest, png));
    return Size{image.width, image.height};
  }
  ASSIGN_OR_RETURN(const std::string bytes,
                   ReadFile(item.image_path, kMaxFileBytes));
  auto header = ReadImageHeader(bytes);
  if (!header.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(item.image_path, ": ", header.status().message()));
  }
  RETURN_IF_ERROR(LinkOrCopy(item.image_path, dest, bytes));
  return Size{static_cast<int>(header->width),
              static_cast<int>(header->height)};
}

absl::StatusOr<LabelMap> ReadOfficialLabels(const std::string& path) {
  if (absl::EndsWith(path, ".mat")) return ReadMatLabels(path, "gt");
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path, kMaxFileBytes));
  auto labels = DecodeLabelPng(bytes);
  if (!labels.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", labels.status().message()));
  }
  return labels;
}

std::string ImageExtension(const DatasetItem& item) {
  if (absl::EndsWith(item.image_path, ".jpg")) return ".jpg";
  return ".png";
}

absl::Status WriteDatasetJson(const PrepareOptions& o, const DatasetInfo& info,
                              const PrepareReport& report) {
  nlohmann::json palette = nlohmann::json::array();
  for (const auto& c : info.palette) palette.push_back({c[0], c[1], c[2]});
  const nlohmann::json j = {{"dataset", info.name},
                            {"split", o.layout.split},
                            {"source", o.layout.root},
                            {"classes", info.class_names.size()},
                            {"class_names", info.class_names},
                            {"palette", palette},
                            {"images", report.images},
                            {"labelled", report.labelled}};
  return WriteFileAtomically(o.out + "/dataset.json", j.dump(2) + "\n");
}

}  // namespace

absl::StatusOr<PrepareReport> PrepareDataset(const PrepareOptions& o) {
  ASSIGN_OR_RETURN(const DatasetInfo* info, FindDataset(o.dataset));
  if (o.out.empty()) return absl::InvalidArgumentError("no output directory");
  std::error_code ec;
  fs::create_directories(o.out + "/images", ec);
  fs::create_directories(o.out + "/labels", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(o.out, ": cannot create: ", ec.message()));
  }
  // A first walk counts the items (names only, no file is read) for the
  // progress line's total and time left.
  int64_t total = 0;
  RETURN_IF_ERROR(ForEachItem(*info, o.layout, [&](const DatasetItem&) {
    ++total;
    return absl::OkStatus();
  }));
  PrepareReport report;
  const absl::Time start = absl::Now();
  absl::Time last_progress = start;
  auto progress_line = [&] {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const double rate =
        (report.images - report.skipped) / std::max(seconds, 1e-9);
    const double left = rate > 0 ? (total - report.images) / rate : 0;
    return absl::StrFormat(
        "%s %s: %d/%d images (%d already done), %.1f images/s, %.0f s left",
        info->name, o.layout.split, report.images, total, report.skipped, rate,
        left);
  };
  RETURN_IF_ERROR(ForEachItem(*info, o.layout, [&](const DatasetItem& item) {
    const std::string image_out =
        absl::StrCat(o.out, "/images/", item.stem, ImageExtension(item));
    const std::string label_out =
        absl::StrCat(o.out, "/labels/", item.stem, ".png");
    const bool labelled = !item.label_path.empty();
    ++report.images;
    if (labelled) ++report.labelled;
    if (fs::exists(image_out) && (!labelled || fs::exists(label_out))) {
      ++report.skipped;
      return absl::OkStatus();
    }
    if (!fs::exists(item.image_path)) {
      return absl::NotFoundError(
          absl::StrCat(item.image_path, ": image listed but missing"));
    }
    // The label first: an item counts as done once its image is there.
    if (labelled) {
      if (!fs::exists(item.label_path)) {
        return absl::NotFoundError(absl::StrCat(
            item.label_path, ": label of ", item.image_path, " is missing"));
      }
      ASSIGN_OR_RETURN(const LabelMap official,
                       ReadOfficialLabels(item.label_path));
      ASSIGN_OR_RETURN(const LabelMap classes,
                       MapLabelIds(*info, official, item.label_path));
      ASSIGN_OR_RETURN(const std::string png, EncodeLabelPng(classes));
      RETURN_IF_ERROR(WriteFileAtomically(label_out, png));
      ASSIGN_OR_RETURN(const Size size, WriteImage(item, image_out));
      if (size.width != classes.width || size.height != classes.height) {
        fs::remove(image_out, ec);
        fs::remove(label_out, ec);
        return absl::InvalidArgumentError(
            absl::StrCat(item.label_path, ": label map is ", classes.width, "x",
                         classes.height, " but its image ", item.image_path,
                         " is ", size.width, "x", size.height));
      }
    } else {
      RETURN_IF_ERROR(WriteImage(item, image_out).status());
    }
    if (o.progress && absl::Now() - last_progress > absl::Seconds(5)) {
      last_progress = absl::Now();
      o.progress(progress_line());
    }
    return absl::OkStatus();
  }));
  if (report.images == 0) {
    return absl::NotFoundError(absl::StrCat(
        "no images in split \"", o.layout.split, "\" of ", o.layout.root));
  }
  if (o.progress) o.progress(progress_line());
  RETURN_IF_ERROR(WriteDatasetJson(o, *info, report));
  return report;
}

}  // namespace primaps
