// The directory model repository: the publication protocol, what readers
// see, and the version policy.
#include "server/model_repository.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace primaps {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string NewDir() {
  std::string pattern = ::testing::TempDir() + "/repository_XXXXXX";
  return ::mkdtemp(pattern.data());
}

TEST(ModelRepositoryTest, PublishedVersionsAreListedAndRead) {
  const std::string dir = NewDir() + "/repo";  // created by the first publish
  auto source = DirectoryModelSource(dir);
  ASSERT_EQ(*PublishToDirectory(dir, "head one", "{\"miou\": 1}"), 1u);
  ASSERT_EQ(*PublishToDirectory(dir, "head two", ""), 2u);
  EXPECT_THAT(*source->ListVersions(), ElementsAre(1u, 2u));
  EXPECT_EQ(*source->ReadHead(1), "head one");
  EXPECT_EQ(*source->ReadHead(2), "head two");
  EXPECT_TRUE(fs::exists(dir + "/1/evaluation.json"));
  EXPECT_FALSE(fs::exists(dir + "/2/evaluation.json"));
  EXPECT_EQ(source->Describe(2), dir + "/2");
  EXPECT_EQ(*source->ReadPolicy(), "");
}

// A writer killed before its rename leaves an .incoming directory: readers
// never list it, and the next publication removes it and takes the next
// number. Names that are not plain numbers are not versions.
TEST(ModelRepositoryTest, HalfWrittenVersionsAreInvisible) {
  const std::string dir = NewDir();
  ASSERT_TRUE(PublishToDirectory(dir, "head one", "").ok());
  fs::create_directory(dir + "/.incoming-2-999");
  std::ofstream(dir + "/.incoming-2-999/head.safetensors") << "half";
  fs::create_directory(dir + "/07");
  fs::create_directory(dir + "/latest");
  std::ofstream(dir + "/3") << "a file, not a version";
  auto source = DirectoryModelSource(dir);
  EXPECT_THAT(*source->ListVersions(), ElementsAre(1u));
  ASSERT_EQ(*PublishToDirectory(dir, "head two", ""), 2u);
  EXPECT_FALSE(fs::exists(dir + "/.incoming-2-999"));
  EXPECT_THAT(*source->ListVersions(), ElementsAre(1u, 2u));
}

TEST(ModelRepositoryTest, PolicyFileAndParsing) {
  const std::string dir = NewDir();
  std::ofstream(dir + "/POLICY") << "pinned:3\n";
  EXPECT_EQ(*DirectoryModelSource(dir)->ReadPolicy(), "pinned:3");
  auto pinned = ParseVersionPolicy("pinned:3");
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(pinned->kind, VersionPolicy::Kind::kPinned);
  EXPECT_EQ(pinned->pinned, 3u);
  EXPECT_EQ(ParseVersionPolicy("latest")->kind, VersionPolicy::Kind::kLatest);
  for (const char* bad : {"", "newest", "pinned:", "pinned:0", "pinned:x"}) {
    EXPECT_THAT(std::string(ParseVersionPolicy(bad).status().message()),
                HasSubstr("expected latest or pinned:V"))
        << bad;
  }
}

TEST(ModelRepositoryTest, ChooseVersionSkipsRefusedOnes) {
  const VersionPolicy latest;
  VersionPolicy pinned;
  pinned.kind = VersionPolicy::Kind::kPinned;
  pinned.pinned = 2;
  EXPECT_EQ(ChooseVersion({1, 2, 3}, latest, {}), 3u);
  EXPECT_EQ(ChooseVersion({1, 2, 3}, latest, {3}), 2u);
  EXPECT_EQ(ChooseVersion({}, latest, {}), std::nullopt);
  EXPECT_EQ(ChooseVersion({1, 2, 3}, pinned, {}), 2u);
  EXPECT_EQ(ChooseVersion({1, 2, 3}, pinned, {2}), std::nullopt);
  EXPECT_EQ(ChooseVersion({1, 3}, pinned, {}), std::nullopt);
}

}  // namespace
}  // namespace primaps
