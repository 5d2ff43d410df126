#include "datasets/official_layout.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"

namespace primaps {
namespace fs = std::filesystem;
namespace {

using Visit = std::function<absl::Status(const DatasetItem&)>;

absl::Status MissingDirectory(const std::string& dir, const std::string& what) {
  return absl::NotFoundError(
      absl::StrCat(dir, ": no such directory (", what, ")"));
}

// Sorted names of the entries of `dir` (one directory level: a Cityscapes
// city holds a few hundred files).
std::vector<std::string> SortedEntries(const std::string& dir, bool dirs) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (dirs ? e.is_directory() : e.is_regular_file())
      names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status Cityscapes(const LayoutOptions& o, const Visit& visit) {
  const std::string images = o.root + "/leftImg8bit/" + o.split;
  const std::string labels = o.root + "/gtFine/" + o.split;
  if (!fs::is_directory(images))
    return MissingDirectory(images,
                            "missing split? Cityscapes splits are "
                            "train, val and test");
  const bool labelled = fs::is_directory(labels);
  const std::string suffix = "_leftImg8bit.png";
  for (const std::string& city : SortedEntries(images, /*dirs=*/true)) {
    for (const std::string& name :
         SortedEntries(images + "/" + city, /*dirs=*/false)) {
      if (!absl::EndsWith(name, suffix)) continue;
      DatasetItem item;
      // As the reference names its precomputed files: the file name less
      // "_leftImg8bit.png".
      item.stem = name.substr(0, name.size() - suffix.size());
      item.image_path = images + "/" + city + "/" + name;
      if (labelled) {
        item.label_path = absl::StrCat(labels, "/", city, "/", item.stem,
                                       "_gtFine_labelIds.png");
      }
      RETURN_IF_ERROR(visit(item));
    }
  }
  return absl::OkStatus();
}

// The first of `candidates` (relative to root) that is a directory.
absl::StatusOr<std::string> FirstDirectory(
    const std::string& root, const std::vector<std::string>& candidates,
    const std::string& what) {
  for (const std::string& c : candidates) {
    if (fs::is_directory(root + "/" + c)) return root + "/" + c;
  }
  return absl::NotFoundError(absl::StrCat("no ", what, " directory under ",
                                          root, ": looked for ",
                                          absl::StrJoin(candidates, ", ")));
}

// Calls `line_visit` for each non-empty line of `path` (CRLF tolerated).
absl::Status ForEachLine(
    const std::string& path,
    const std::function<absl::Status(std::string)>& line_visit) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view id = absl::StripAsciiWhitespace(line);
    if (id.empty()) continue;
    RETURN_IF_ERROR(line_visit(std::string(id)));
  }
  return absl::OkStatus();
}

absl::Status CocoStuff(const LayoutOptions& o, const Visit& visit) {
  if (o.split != "train" && o.split != "val") {
    return absl::InvalidArgumentError(absl::StrCat(
        "COCO-Stuff split \"", o.split, "\"; expected train or val"));
  }
  const std::string dir = o.split + "2017";
  const std::string list =
      o.list_file.empty() ? absl::StrCat(o.root, "/curated/", dir,
                                         "/Coco164kFull_Stuff_Coarse_7.txt")
                          : o.list_file;
  if (!fs::is_regular_file(list)) {
    return absl::NotFoundError(absl::StrCat(
        list, ": no image list (give the curated list with --list)"));
  }
  ASSIGN_OR_RETURN(const std::string images,
                   FirstDirectory(o.root, {"images/" + dir, dir}, "image"));
  ASSIGN_OR_RETURN(const std::string labels,
                   FirstDirectory(o.root,
                                  {"annotations/" + dir,
                                   "stuffthingmaps_trainval2017/" + dir,
                                   "stuffthingmaps/" + dir},
                                  "label"));
  return ForEachLine(list, [&](std::string id) {
    DatasetItem item;
    item.stem = id;
    item.image_path = absl::StrCat(images, "/", id, ".jpg");
    item.label_path = absl::StrCat(labels, "/", id, ".png");
    return visit(item);
  });
}

absl::Status Potsdam(const LayoutOptions& o, const Visit& visit) {
  std::vector<std::string> lists;
  if (o.split == "train")
    lists = {"labelled_train.txt"};
  else if (o.split == "val")
    lists = {"labelled_test.txt"};
  else if (o.split == "unlabelled_train")
    lists = {"unlabelled_train.txt"};
  else if (o.split == "train+val")
    lists = {"labelled_train.txt", "labelled_test.txt"};
  else if (o.split == "all")
    lists = {"all.txt"};
  else {
    return absl::InvalidArgumentError(
        absl::StrCat("Potsdam split \"", o.split,
                     "\"; expected train, val, unlabelled_train, train+val "
                     "or all"));
  }
  for (const std::string& list : lists) {
    RETURN_IF_ERROR(ForEachLine(o.root + "/" + list, [&](std::string id) {
      DatasetItem item;
      item.stem = id;
      item.image_path = absl::StrCat(o.root, "/imgs/", id, ".mat");
      const std::string gt = absl::StrCat(o.root, "/gt/", id, ".mat");
      // The unlabelled lists have no ground truth.
      if (fs::exists(gt)) item.label_path = gt;
      return visit(item);
    }));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ForEachItem(const DatasetInfo& info, const LayoutOptions& options,
                         const Visit& visit) {
  if (!fs::is_directory(options.root))
    return MissingDirectory(options.root, "the dataset root");
  if (info.name == "cityscapes") return Cityscapes(options, visit);
  if (info.name == "cocostuff27") return CocoStuff(options, visit);
  if (info.name == "potsdam3") return Potsdam(options, visit);
  return absl::UnimplementedError(
      absl::StrCat("no official layout for ", info.name));
}

}  // namespace primaps
