#include "datasets/dataset_info.h"

#include "absl/strings/str_cat.h"

namespace primaps {
namespace {

DatasetInfo Cityscapes() {
  DatasetInfo d;
  d.name = "cityscapes";
  d.class_names = {"road",          "sidewalk",     "parking",    "rail track",
                   "building",      "wall",         "fence",      "guard rail",
                   "bridge",        "tunnel",       "pole",       "polegroup",
                   "traffic light", "traffic sign", "vegetation", "terrain",
                   "sky",           "person",       "rider",      "car",
                   "truck",         "bus",          "caravan",    "trailer",
                   "train",         "motorcycle",   "bicycle"};
  d.palette = {
      {128, 64, 128},  {244, 35, 232},  {250, 170, 160}, {230, 150, 140},
      {70, 70, 70},    {102, 102, 156}, {190, 153, 153}, {180, 165, 180},
      {150, 100, 100}, {150, 120, 90},  {153, 153, 153}, {153, 153, 153},
      {250, 170, 30},  {220, 220, 0},   {107, 142, 35},  {152, 251, 152},
      {70, 130, 180},  {220, 20, 60},   {255, 0, 0},     {0, 0, 142},
      {0, 0, 70},      {0, 60, 100},    {0, 0, 90},      {0, 0, 110},
      {0, 80, 100},    {0, 0, 230},     {119, 11, 32}};
  // gtFine labelIds hold 0..33: the 27 classes are ids 7..33 (the
  // reference's IdsToTrainIds: id - 7, outside [0, 26] ignored).
  d.id_to_class.fill(kInvalidId);
  for (int id = 0; id <= 33; ++id)
    d.id_to_class[id] = id >= 7 ? static_cast<int16_t>(id - 7) : kIgnoreLabel;
  return d;
}

// The PASCAL VOC palette the reference uses for COCO-Stuff.
std::array<uint8_t, 3> PascalColor(int index) {
  std::array<uint8_t, 3> c = {0, 0, 0};
  for (int shift = 7; shift >= 0; --shift) {
    for (int ch = 0; ch < 3; ++ch) c[ch] |= ((index >> ch) & 1) << shift;
    index >>= 3;
  }
  return c;
}

DatasetInfo CocoStuff27() {
  DatasetInfo d;
  d.name = "cocostuff27";
  // The reference's names: "food" and "furniture" appear twice, once for
  // the thing and once for the stuff category.
  d.class_names = {"electronic",  "appliance",  "food",      "furniture",
                   "indoor",      "kitchen",    "accessory", "animal",
                   "outdoor",     "person",     "sports",    "vehicle",
                   "ceiling",     "floor",      "food",      "furniture",
                   "rawmaterial", "textile",    "wall",      "window",
                   "building",    "ground",     "plant",     "sky",
                   "solid",       "structural", "water"};
  for (int k = 0; k < 27; ++k) d.palette.push_back(PascalColor(k));
  // The 182 fine stuffthingmaps ids to the 27 coarse classes (the
  // reference's fine_to_coarse); 255 is unlabelled.
  static constexpr int16_t kFineToCoarse[182] = {
      9,  11, 11, 11, 11, 11, 11, 11, 11, 8,  8,  8,  8,  8,  8,  7,  7,
      7,  7,  7,  7,  7,  7,  7,  7,  6,  6,  6,  6,  6,  6,  6,  6,  10,
      10, 10, 10, 10, 10, 10, 10, 10, 10, 5,  5,  5,  5,  5,  5,  5,  5,
      2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  3,  3,  3,  3,  3,  3,  3,
      3,  3,  3,  0,  0,  0,  0,  0,  0,  1,  1,  1,  1,  1,  1,  4,  4,
      4,  4,  4,  4,  4,  4,  17, 17, 22, 20, 20, 22, 15, 25, 16, 13, 12,
      12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13, 22,
      26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21,
      17, 25, 16, 21, 17, 22, 16, 21, 21, 25, 21, 26, 21, 24, 20, 17, 14,
      21, 26, 15, 23, 20, 21, 24, 15, 24, 22, 25, 15, 20, 17, 17, 22, 14,
      18, 18, 18, 18, 18, 18, 18, 26, 26, 19, 19, 24};
  d.id_to_class.fill(kInvalidId);
  for (int id = 0; id < 182; ++id) d.id_to_class[id] = kFineToCoarse[id];
  d.id_to_class[255] = kIgnoreLabel;
  return d;
}

DatasetInfo Potsdam3() {
  DatasetInfo d;
  d.name = "potsdam3";
  d.class_names = {"road", "building", "vegetation"};
  d.palette = {{58, 0, 68}, {0, 130, 122}, {255, 230, 0}};
  // Six ground-truth ids to three classes: roads and cars, buildings and
  // clutter, vegetation and trees.
  d.id_to_class.fill(kInvalidId);
  const int16_t six_to_three[6] = {0, 1, 2, 2, 0, 1};
  for (int id = 0; id < 6; ++id) d.id_to_class[id] = six_to_three[id];
  d.id_to_class[255] = kIgnoreLabel;
  return d;
}

}  // namespace

absl::StatusOr<const DatasetInfo*> FindDataset(absl::string_view name) {
  static const DatasetInfo* const kAll[] = {new DatasetInfo(Cityscapes()),
                                            new DatasetInfo(CocoStuff27()),
                                            new DatasetInfo(Potsdam3())};
  for (const DatasetInfo* d : kAll) {
    if (d->name == name) return d;
  }
  return absl::NotFoundError(
      absl::StrCat("unknown dataset \"", name,
                   "\"; known: cityscapes, cocostuff27, potsdam3"));
}

absl::StatusOr<LabelMap> MapLabelIds(const DatasetInfo& info,
                                     const LabelMap& official,
                                     absl::string_view file) {
  LabelMap out{official.width, official.height,
               std::vector<uint8_t>(official.labels.size())};
  for (size_t i = 0; i < official.labels.size(); ++i) {
    const int16_t mapped = info.id_to_class[official.labels[i]];
    if (mapped == kInvalidId) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": label id ", official.labels[i], " at pixel (",
                       i % official.width, ", ", i / official.width,
                       ") is not a ", info.name, " id"));
    }
    out.labels[i] = static_cast<uint8_t>(mapped);
  }
  return out;
}

}  // namespace primaps
