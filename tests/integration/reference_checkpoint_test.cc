// The reference's released models: a train.py Lightning checkpoint served
// from one file by the real server. The checkpoints are written at test time
// by tests/golden/make_reference_checkpoint.py exactly as train.py saves
// them (seeded random weights); the same tensors split into an official
// backbone .pth and a head safetensors file give the server's answers to
// compare with.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "tests/integration/server_process.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::ServerProcess;
using ::primaps::testing::TempDir;
using ::testing::HasSubstr;

// The checkpoints of one architecture, made once per test binary.
const std::string& Checkpoints(const std::string& arch) {
  static auto* dirs = new std::map<std::string, std::unique_ptr<TempDir>>();
  auto& dir = (*dirs)[arch];
  if (dir == nullptr) {
    dir = std::make_unique<TempDir>();
    const std::string command =
        absl::StrCat("/usr/bin/python3 " PRIMAPS_SOURCE_DIR
                     "/tests/golden/make_reference_checkpoint.py ",
                     dir->path(), " ", arch);
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
  return dir->path();
}

std::unique_ptr<PrimapsClient> Client(const ServerProcess& server) {
  ClientOptions options;
  options.target = server.address();
  options.retries = 0;
  options.deadline = absl::Seconds(120);
  return *PrimapsClient::Create(options);
}

v1::ImageRequest Request(int resize) {
  v1::ImageRequest r;
  r.mutable_image()->set_encoded(primaps::testing::ReadBinary(
      primaps::testing::DemoImagePath("coco_example.jpg")));
  r.mutable_preprocess()->set_resize(resize);
  r.mutable_preprocess()->set_crf(false);
  r.set_probabilities(true);
  return r;
}

// One file against the same tensors as backbone + head: every answer equal,
// and the model named after the file.
void ExpectServedLikeTheSplitFiles(const std::string& arch, int resize) {
  const std::string& dir = Checkpoints(arch);
  ServerProcess whole({"--weights=" + dir + "/reference.ckpt", "--threads=2"});
  ASSERT_TRUE(whole.started()) << whole.Log();
  ServerProcess split({"--backbone=" + arch,
                       "--weights=" + dir + "/backbone.pth",
                       "--head=" + dir + "/head.safetensors", "--threads=2"});
  ASSERT_TRUE(split.started()) << split.Log();
  EXPECT_THAT(whole.Log(),
              HasSubstr("--weights is the reference's checkpoint: " + arch +
                        ", dino_block 1, 5 classes, "
                        "theta_M from cluster_probe.ema_model"));
  auto a = Client(whole), b = Client(split);
  auto model = a->GetModelStatus();
  const v1::ImageRequest request = Request(resize);
  auto seg_a = a->Segment(request), seg_b = b->Segment(request);
  ASSERT_TRUE(seg_a.ok()) << seg_a.status();
  ASSERT_TRUE(seg_b.ok()) << seg_b.status();
  EXPECT_EQ(seg_a->model().backbone(), arch);
  EXPECT_EQ(seg_a->model().head_version(), 1u);
  EXPECT_EQ(seg_a->model().classes(), 5u);
  EXPECT_EQ(seg_a->model().source(), dir + "/reference.ckpt");
  EXPECT_EQ(seg_a->labels().png(), seg_b->labels().png());
  ASSERT_EQ(seg_a->probabilities_size(), seg_b->probabilities_size());
  EXPECT_GT(seg_a->probabilities_size(), 0);
  for (int i = 0; i < seg_a->probabilities_size(); ++i)
    ASSERT_EQ(seg_a->probabilities(i), seg_b->probabilities(i)) << i;
  auto pseudo_a = a->PseudoLabel(request), pseudo_b = b->PseudoLabel(request);
  ASSERT_TRUE(pseudo_a.ok()) << pseudo_a.status();
  ASSERT_TRUE(pseudo_b.ok()) << pseudo_b.status();
  EXPECT_EQ(pseudo_a->labels().png(), pseudo_b->labels().png());
  EXPECT_EQ(pseudo_a->masks().png(), pseudo_b->masks().png());
}

TEST(ReferenceCheckpointTest, DinoVitS8IsServedFromOneFile) {
  ExpectServedLikeTheSplitFiles("dino_vits8", 64);
}

TEST(ReferenceCheckpointTest, DinoV2VitS14IsServedFromOneFile) {
  ExpectServedLikeTheSplitFiles("dinov2_vits14", 70);
}

TEST(ReferenceCheckpointTest, BaselineCheckpointServesItsClusterCenters) {
  const std::string& dir = Checkpoints("dino_vits8");
  ServerProcess server({"--weights=" + dir + "/baseline.ckpt"});
  ASSERT_TRUE(server.started()) << server.Log();
  EXPECT_THAT(server.Log(),
              HasSubstr("theta_M from cluster_probe.cluster_centers"));
  EXPECT_TRUE(Client(server)->Segment(Request(64)).ok());
}

TEST(ReferenceCheckpointTest, ANamedBackboneMustMatchTheFile) {
  const std::string& dir = Checkpoints("dino_vits8");
  ServerProcess same(
      {"--backbone=dino_vits8", "--weights=" + dir + "/reference.ckpt"});
  EXPECT_TRUE(same.started()) << same.Log();
  ServerProcess other(
      {"--backbone=dino_vitb8", "--weights=" + dir + "/reference.ckpt"});
  EXPECT_FALSE(other.started());
  EXPECT_THAT(other.Log(), HasSubstr("--backbone=dino_vitb8 but --weights " +
                                     dir + "/reference.ckpt holds dino_vits8"));
}

TEST(ReferenceCheckpointTest, WhatIsNotAReferenceCheckpointIsRefusedByName) {
  const std::string& dir = Checkpoints("dino_vits8");
  TempDir scratch;
  const std::string whole =
      primaps::testing::ReadBinary(dir + "/reference.ckpt");
  const std::string truncated =
      scratch.Write("truncated.ckpt", whole.substr(0, whole.size() / 2));
  const struct {
    std::string file;
    std::string says;
  } cases[] = {
      {dir + "/no_seghead.ckpt", "no seghead.weight_g / seghead.weight_v"},
      {dir + "/stego.ckpt", "this is a STEGO checkpoint"},
      {dir + "/mismatch.ckpt",
       "hyper_parameters name the backbone dino_vitb8 (backbone_arch, "
       "backbone_patch); the tensors under net.model. are dino_vits8"},
      {truncated, "truncated.ckpt"},
  };
  for (const auto& c : cases) {
    ServerProcess server({"--weights=" + c.file});
    EXPECT_FALSE(server.started()) << c.file;
    EXPECT_THAT(server.Log(), HasSubstr(c.says)) << server.Log();
    EXPECT_THAT(server.Log(), HasSubstr(c.file)) << server.Log();
  }
}

}  // namespace
}  // namespace primaps
