// Preparing the official layouts, against tests/golden/make_dataset_golden.py
// (miniature Cityscapes, COCO-Stuff and Potsdam datasets and the label maps
// the reference's mappings make of them), and the errors on bad input.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "datasets/dataset_info.h"
#include "datasets/prepare.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {
namespace fs = std::filesystem;

std::string TempDir() {
  char tmpl[] = "/tmp/primaps_datasets_XXXXXX";
  return mkdtemp(tmpl);
}

std::string Fixture(const std::string& name) {
  return testing::FixturePath("datasets/" + name);
}

LabelMap LoadLabels(const std::string& path) {
  auto labels = DecodeLabelPng(testing::ReadBinary(path));
  EXPECT_TRUE(labels.ok()) << path << ": " << labels.status();
  return labels.ok() ? *labels : LabelMap{};
}

struct Case {
  std::string dataset;
  std::string fixture;
  std::string split;
  int images;
  int labelled;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.dataset << " " << c.split;
}

class PrepareGoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(PrepareGoldenTest, LabelsAndImagesAreTheReferences) {
  const Case& c = GetParam();
  PrepareOptions o;
  o.dataset = c.dataset;
  o.layout.root = Fixture(c.fixture);
  o.layout.split = c.split;
  o.out = TempDir();
  auto report = PrepareDataset(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->images, c.images);
  EXPECT_EQ(report->labelled, c.labelled);
  EXPECT_EQ(report->skipped, 0);

  // Every expected file matches the output of the same name.
  const std::string expected = Fixture("expected/" + c.dataset + "_" + c.split);
  int labels = 0, images = 0;
  for (const auto& e : fs::directory_iterator(expected)) {
    const std::string name = e.path().filename().string();
    SCOPED_TRACE(name);
    const std::string image_suffix = "_image.png";
    if (name.size() > image_suffix.size() &&
        name.compare(name.size() - image_suffix.size(), image_suffix.size(),
                     image_suffix) == 0) {
      const std::string stem =
          name.substr(0, name.size() - image_suffix.size());
      auto want = DecodeImage(testing::ReadBinary(e.path().string()));
      auto got =
          DecodeImage(testing::ReadBinary(o.out + "/images/" + stem + ".png"));
      ASSERT_TRUE(want.ok() && got.ok());
      EXPECT_EQ(got->width, want->width);
      EXPECT_EQ(got->pixels, want->pixels);
      ++images;
      continue;
    }
    const LabelMap want = LoadLabels(e.path().string());
    const LabelMap got = LoadLabels(o.out + "/labels/" + name);
    ASSERT_EQ(got.width, want.width);
    ASSERT_EQ(got.height, want.height);
    EXPECT_EQ(got.labels, want.labels);
    ++labels;
  }
  EXPECT_EQ(labels, c.labelled);
  if (c.dataset == "potsdam3") {
    EXPECT_EQ(images, c.images);
  }

  const auto json =
      nlohmann::json::parse(testing::ReadBinary(o.out + "/dataset.json"));
  EXPECT_EQ(json["dataset"], c.dataset);
  EXPECT_EQ(json["images"], c.images);
  const auto* info = *FindDataset(c.dataset);
  EXPECT_EQ(json["class_names"].size(), info->class_names.size());
  EXPECT_EQ(json["palette"].size(), info->class_names.size());

  // A second run finds everything done.
  auto again = PrepareDataset(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->skipped, c.images);
  fs::remove_all(o.out);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PrepareGoldenTest,
    ::testing::Values(Case{"cityscapes", "cityscapes", "train", 4, 4},
                      Case{"cityscapes", "cityscapes", "val", 2, 2},
                      Case{"cocostuff27", "cocostuff", "train", 3, 3},
                      Case{"cocostuff27", "cocostuff", "val", 3, 3},
                      Case{"potsdam3", "potsdam", "train", 2, 2},
                      Case{"potsdam3", "potsdam", "val", 1, 1},
                      Case{"potsdam3", "potsdam", "unlabelled_train", 1, 0}),
    [](const auto& info) {
      return info.param.dataset + "_" +
             (info.param.split == "unlabelled_train" ? std::string("unlabelled")
                                                     : info.param.split);
    });

TEST(DatasetInfoTest, ClassesAndMaps) {
  const DatasetInfo* cs = *FindDataset("cityscapes");
  EXPECT_EQ(cs->class_names.size(), 27u);
  EXPECT_EQ(cs->id_to_class[7], 0);    // road
  EXPECT_EQ(cs->id_to_class[33], 26);  // bicycle
  EXPECT_EQ(cs->id_to_class[6], kIgnoreLabel);
  EXPECT_EQ(cs->id_to_class[34], kInvalidId);
  EXPECT_EQ((*FindDataset("cocostuff27"))->class_names.size(), 27u);
  EXPECT_EQ((*FindDataset("potsdam3"))->class_names.size(), 3u);
  auto unknown = FindDataset("ade20k");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("cityscapes"), std::string::npos);
}

// A copy of the Cityscapes fixture to break.
class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TempDir();
    fs::copy(Fixture("cityscapes"), root_, fs::copy_options::recursive);
    options_.dataset = "cityscapes";
    options_.layout.root = root_;
    options_.layout.split = "train";
    options_.out = root_ + "/out";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Label(const std::string& stem) {
    return root_ + "/gtFine/train/aachen/" + stem + "_gtFine_labelIds.png";
  }
  void WriteLabels(const std::string& path, const LabelMap& labels) {
    ASSERT_TRUE(WriteFileAtomically(path, *EncodeLabelPng(labels)).ok());
  }

  std::string root_;
  PrepareOptions options_;
};

TEST_F(BadInputTest, LabelOfAnotherSizeNamesTheFile) {
  const std::string label = Label("aachen_000001_000019");
  WriteLabels(label, LabelMap{19, 12, std::vector<uint8_t>(19 * 12, 7)});
  auto report = PrepareDataset(options_);
  ASSERT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find(label), std::string::npos)
      << report.status();
  EXPECT_NE(report.status().message().find("19x12"), std::string::npos);
  // Nothing half-written for that item: a rerun after the fix resumes.
  EXPECT_FALSE(fs::exists(options_.out + "/images/aachen_000001_000019.png"));
  EXPECT_FALSE(fs::exists(options_.out + "/labels/aachen_000001_000019.png"));
}

TEST_F(BadInputTest, IdOutsideTheMapNamesFileAndId) {
  LabelMap labels{20, 12, std::vector<uint8_t>(20 * 12, 7)};
  labels.labels[25] = 40;
  const std::string label = Label("aachen_000000_000019");
  WriteLabels(label, labels);
  auto report = PrepareDataset(options_);
  ASSERT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find(label), std::string::npos);
  EXPECT_NE(report.status().message().find("label id 40 at pixel (5, 1)"),
            std::string::npos)
      << report.status();
}

TEST_F(BadInputTest, MissingSplitAndMissingLabel) {
  options_.layout.split = "test";
  auto report = PrepareDataset(options_);
  ASSERT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(report.status().message().find("leftImg8bit/test"),
            std::string::npos);

  options_.layout.split = "train";
  fs::remove(Label("aachen_000001_000019"));
  report = PrepareDataset(options_);
  ASSERT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(report.status().message().find(Label("aachen_000001_000019")),
            std::string::npos);
}

TEST(PrepareBadMatTest, UnreadableMatNamesTheFile) {
  const std::string root = TempDir();
  fs::copy(Fixture("potsdam"), root, fs::copy_options::recursive);
  ASSERT_TRUE(
      WriteFileAtomically(root + "/imgs/3_4_5.mat", "not a mat file").ok());
  PrepareOptions o;
  o.dataset = "potsdam3";
  o.layout.root = root;
  o.layout.split = "val";
  o.out = root + "/out";
  auto report = PrepareDataset(o);
  ASSERT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find(root + "/imgs/3_4_5.mat"),
            std::string::npos)
      << report.status();
  fs::remove_all(root);
}

TEST(PrepareBadListTest, CocoWithoutListSaysWhatIsMissing) {
  const std::string root = TempDir();
  fs::copy(Fixture("cocostuff"), root, fs::copy_options::recursive);
  fs::remove_all(root + "/curated");
  PrepareOptions o;
  o.dataset = "cocostuff27";
  o.layout.root = root;
  o.layout.split = "val";
  o.out = root + "/out";
  auto report = PrepareDataset(o);
  ASSERT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(report.status().message().find("Coco164kFull_Stuff_Coarse_7.txt"),
            std::string::npos);
  // The list given explicitly, with the labels in the official folder name.
  fs::create_directories(root + "/stuffthingmaps_trainval2017");
  fs::rename(root + "/annotations/val2017",
             root + "/stuffthingmaps_trainval2017/val2017");
  std::ofstream(root + "/list.txt") << "val_000000000001\n";
  o.layout.list_file = root + "/list.txt";
  report = PrepareDataset(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->images, 1);
  fs::remove_all(root);
}

}  // namespace
}  // namespace primaps
