#include "server/model_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace primaps {
namespace {

using ::testing::HasSubstr;

std::string HeadBytes(float gain, const std::string& backbone = "builtin") {
  SegmentationHead head;
  head.classes = 2;
  head.dim = 3;
  head.backbone = backbone;
  head.theta_m = {{1, 0, 0, 0, 1, 0}, {gain, gain}};
  head.theta_r = head.theta_m;
  return SerializeHeadCheckpoint(head);
}

ModelRegistry::Options Options(const std::string& dir = "") {
  ModelRegistry::Options options;
  options.backbone = "builtin";
  options.feature_dim = 3;
  options.checkpoint_dir = dir;
  return options;
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/primaps_registry_XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path_ + "/" + name, std::ios::binary) << bytes;
  }

 private:
  std::string path_;
};

TEST(ModelRegistryTest, StartsWithoutHead) {
  ModelRegistry registry(Options());
  EXPECT_EQ(registry.Current()->version, 0u);
  EXPECT_EQ(registry.Current()->head, nullptr);
  EXPECT_EQ(registry.Current()->backbone, "builtin");
}

TEST(ModelRegistryTest, SwapRefuseAndRollback) {
  ModelRegistry registry(Options());
  auto v1 = registry.LoadFromBytes(HeadBytes(1.f));
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ((*v1)->version, 1u);
  const std::shared_ptr<const ModelSnapshot> held = registry.Current();
  auto v2 = registry.LoadFromBytes(HeadBytes(2.f));
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(registry.Current()->version, 2u);
  // A request that took v1 keeps it, unchanged.
  EXPECT_EQ(held->version, 1u);
  EXPECT_EQ(held->head->theta_r.g[0], 1.f);
  // Refused: wrong backbone, garbage. v2 keeps serving.
  EXPECT_THAT(std::string(registry.LoadFromBytes(HeadBytes(3.f, "dino_vits8"))
                              .status()
                              .message()),
              HasSubstr("backbone"));
  EXPECT_FALSE(registry.LoadFromBytes("not a checkpoint").ok());
  EXPECT_EQ(registry.Current()->version, 2u);
  EXPECT_EQ(registry.refused_swaps(), 2u);
  EXPECT_EQ(registry.swaps(), 2u);
  // Rollback republishes v1's head as version 3.
  auto back = registry.Rollback();
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)->version, 3u);
  EXPECT_EQ((*back)->digest, (*v1)->digest);
  EXPECT_EQ((*back)->head->theta_r.g[0], 1.f);
  EXPECT_EQ(registry.Rollback().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ModelRegistryTest, PathsStayInsideTheCheckpointDirectory) {
  TempDir dir, outside;
  dir.Write("good.safetensors", HeadBytes(1.f));
  std::filesystem::create_directory(dir.path() + "/sub");
  dir.Write("sub/also.safetensors", HeadBytes(2.f));
  outside.Write("evil.safetensors", HeadBytes(3.f));
  std::filesystem::create_symlink(outside.path() + "/evil.safetensors",
                                  dir.path() + "/link.safetensors");
  std::filesystem::create_symlink(dir.path() + "/good.safetensors",
                                  dir.path() + "/inner_link.safetensors");
  ModelRegistry registry(Options(dir.path()));
  EXPECT_TRUE(registry.LoadFromPath("good.safetensors").ok());
  EXPECT_TRUE(registry.LoadFromPath("sub/also.safetensors").ok());
  EXPECT_TRUE(registry.LoadFromPath("inner_link.safetensors").ok());
  EXPECT_EQ(registry
                .LoadFromPath(
                    "../" +
                    std::filesystem::path(outside.path()).filename().string() +
                    "/evil.safetensors")
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.LoadFromPath("sub/../good.safetensors").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.LoadFromPath(outside.path() + "/evil.safetensors")
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  auto link = registry.LoadFromPath("link.safetensors");
  EXPECT_EQ(link.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(link.status().message()), HasSubstr("outside"));
  EXPECT_EQ(registry.LoadFromPath("missing.safetensors").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Current()->version, 3u);
  ModelRegistry no_dir(Options());
  EXPECT_EQ(no_dir.LoadFromPath("good.safetensors").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ModelRegistryTest, ReadersSeeNonDecreasingVersionsDuringSwaps) {
  ModelRegistry registry(Options());
  ASSERT_TRUE(registry.LoadFromBytes(HeadBytes(1.f)).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> violations{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      uint64_t last = 0;
      while (!stop) {
        const auto snapshot = registry.Current();
        if (snapshot->version < last || snapshot->head == nullptr) ++violations;
        last = snapshot->version;
      }
    });
  }
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(registry.LoadFromBytes(HeadBytes(1.f + i)).ok());
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(violations, 0);
  EXPECT_EQ(registry.Current()->version, 201u);
  EXPECT_LE(registry.History().size(), 8u);
}

}  // namespace
}  // namespace primaps
