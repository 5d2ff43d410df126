#include "base/file_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "engine/segmentation_head.h"

namespace primaps {
namespace {

namespace fs = std::filesystem;

SegmentationHead Head(int dim) {
  SegmentationHead head;
  head.classes = 4;
  head.dim = dim;
  head.backbone = "builtin";
  for (WeightNormConv* conv : {&head.theta_m, &head.theta_r}) {
    conv->v.assign(4 * dim, 0.5f);
    conv->g.assign(4, 1.f);
  }
  return head;
}

TEST(WriteFileAtomicallyTest, ReplacesWholeFiles) {
  char pattern[] = "/tmp/primaps_file_util_XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::string path = dir + "/a.bin";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second, longer").ok());
  EXPECT_EQ(*ReadFile(path), "second, longer");
  EXPECT_EQ(ReadFile(dir + "/missing").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteFileAtomically(dir + "/no/such/dir/file", "x").code(),
            absl::StatusCode::kNotFound);
  fs::remove_all(dir);
}

// A full disk during a checkpoint write: the previous checkpoint stays
// intact and loadable, and no temporary file is left. Needs a small tmpfs
// (root); skipped where mounting is not allowed.
TEST(WriteFileAtomicallyTest, FullDiskKeepsThePreviousCheckpoint) {
  char pattern[] = "/tmp/primaps_full_disk_XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  if (std::system(("mount -t tmpfs -o size=64k tmpfs " + dir + " 2>/dev/null")
                      .c_str()) != 0) {
    fs::remove(dir);
    GTEST_SKIP() << "cannot mount a small tmpfs here";
  }
  const std::string path = dir + "/head.safetensors";
  const std::string small = SerializeHeadCheckpoint(Head(256));  // ~16 KB
  const std::string large =
      SerializeHeadCheckpoint(Head(4096));  // ~256 KB: does not fit
  ASSERT_TRUE(WriteFileAtomically(path, small).ok());
  const absl::Status full = WriteFileAtomically(path, large);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(*ReadFile(path), small);
  EXPECT_TRUE(ParseHeadCheckpoint(*ReadFile(path), "builtin", 256).ok());
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "head.safetensors");
  }
  EXPECT_EQ(files, 1);
  std::system(("umount " + dir).c_str());
  fs::remove(dir);
}

}  // namespace
}  // namespace primaps

namespace primaps {
namespace {

TEST(ReadTokenFileTest, FirstLineWithoutWhitespaceOrCarriageReturn) {
  const std::string path = ::testing::TempDir() + "/token_crlf";
  ASSERT_TRUE(WriteFileAtomically(path, "  s3cret\r\nsecond line\n").ok());
  auto token = ReadTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "s3cret");
  ASSERT_TRUE(WriteFileAtomically(path, " \r\n").ok());
  EXPECT_EQ(ReadTokenFile(path).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ReadTokenFile(path + ".missing").ok());
}

}  // namespace
}  // namespace primaps

namespace primaps {
namespace {

TEST(AppendLineTest, AppendsWholeLinesAndNamesTheFileOnError) {
  char pattern[] = "/tmp/primaps_append_XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::string path = dir + "/metrics.jsonl";
  ASSERT_TRUE(AppendLine(path, "{\"step\":1}").ok());
  ASSERT_TRUE(AppendLine(path, "{\"step\":2}").ok());
  EXPECT_EQ(*ReadFile(path), "{\"step\":1}\n{\"step\":2}\n");
  const absl::Status missing = AppendLine(dir + "/no/such/dir/x.jsonl", "x");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find(dir + "/no/such/dir/x.jsonl"),
            std::string::npos)
      << missing;
  std::filesystem::remove_all(dir);
}

TEST(CreateDirectoriesTest, CreatesParentsAndNamesWhatItCannotCreate) {
  char pattern[] = "/tmp/primaps_mkdir_XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  EXPECT_TRUE(CreateDirectories(dir + "/a/b/c").ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/a/b/c"));
  EXPECT_TRUE(CreateDirectories(dir + "/a/b/c").ok());  // already there
  ASSERT_TRUE(WriteFileAtomically(dir + "/file", "x").ok());
  const absl::Status under_a_file = CreateDirectories(dir + "/file/sub");
  EXPECT_FALSE(under_a_file.ok());
  EXPECT_NE(under_a_file.message().find(dir + "/file/sub"), std::string::npos)
      << under_a_file;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace primaps
