// The reference's released models: a train.py Lightning checkpoint served
// from one file by the real server. The checkpoints are written at test time
// by tests/golden/make_reference_checkpoint.py exactly as train.py saves
// them (seeded random weights); the same tensors split into an official
// backbone .pth and a head safetensors file give the server's answers to
// compare with.
#include "engine/reference_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "engine/segmentation_head.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::primaps::testing::Client;
using ::primaps::testing::ServerProcess;
using ::primaps::testing::TempDir;
using ::testing::HasSubstr;

// The checkpoints of one architecture, made once per test process and
// removed at its exit (half a GB each: ctest runs every case in a process of
// its own).
const std::string& Checkpoints(const std::string& arch) {
  static std::map<std::string, std::unique_ptr<TempDir>> dirs;
  auto& dir = dirs[arch];
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
  EXPECT_EQ(seg_a->model().source(), "--weights " + dir + "/reference.ckpt");
  EXPECT_EQ(seg_a->model().dino_block(), 1);
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
      // Served as STEGO's checkpoint (stego_checkpoint_test), whose
      // projection here is linear only: refused by name.
      {dir + "/stego.ckpt", "no net.cluster2.*: a linear projection"},
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

// A running server takes the heads of a reference checkpoint through
// AdminService (by path: a whole model is larger than a gRPC message), and
// refuses what is not one while it keeps serving.
TEST(ReferenceCheckpointTest, AdminLoadTakesTheHeadsOfAReferenceCheckpoint) {
  const std::string& dir = Checkpoints("dino_vits8");
  TempDir work;
  const std::string token = work.Write("token", "reference-token\n");
  const std::string checkpoints = work.path() + "/checkpoints";
  ASSERT_EQ(
      std::system(("mkdir -p " + checkpoints + " && cp " + dir +
                   "/stego.ckpt " + dir + "/reference.ckpt " + checkpoints)
                      .c_str()),
      0);
  ServerProcess server({"--backbone=dino_vits8",
                        "--weights=" + dir + "/backbone.pth",
                        "--admin_token_file=" + token,
                        "--checkpoint_dir=" + checkpoints, "--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  auto client = Client(server, "reference-token");
  v1::LoadCheckpointRequest stego;
  stego.set_path("stego.ckpt");
  auto refused = client->LoadCheckpoint(stego);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("this is a STEGO checkpoint"));
  EXPECT_EQ(*client->Health(), "SERVING");
  v1::LoadCheckpointRequest reference;
  reference.set_path("reference.ckpt");
  auto loaded = client->LoadCheckpoint(reference);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model().classes(), 5u);
  // The same heads as the head file of the same tensors.
  ServerProcess split({"--backbone=dino_vits8",
                       "--weights=" + dir + "/backbone.pth",
                       "--head=" + dir + "/head.safetensors", "--threads=2"});
  ASSERT_TRUE(split.started()) << split.Log();
  auto a = client->Segment(Request(64));
  auto b = Client(split)->Segment(Request(64));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->labels().png(), b->labels().png());
}

// Heads read the features of the block they were trained on: the
// reference's checkpoint names it (dino_block 1 here), and a server serving
// another block refuses them, at start-up and through AdminService.
TEST(ReferenceCheckpointTest, HeadsOfAnotherDinoBlockAreRefused) {
  const std::string& dir = Checkpoints("dino_vits8");
  ServerProcess whole({"--weights=" + dir + "/reference.ckpt", "--dino_block=2",
                       "--threads=2"});
  EXPECT_FALSE(whole.started());
  EXPECT_THAT(whole.Log(),
              HasSubstr("the head was trained on the features of dino_block "
                        "1; this server serves dino_block 2 (--dino_block)"));
  TempDir work;
  const std::string token = work.Write("token", "reference-token\n");
  ServerProcess block2({"--backbone=dino_vits8",
                        "--weights=" + dir + "/backbone.pth", "--dino_block=2",
                        "--admin_token_file=" + token, "--threads=2"});
  ASSERT_TRUE(block2.started()) << block2.Log();
  auto client = Client(block2, "reference-token");
  v1::LoadCheckpointRequest load;
  load.set_data(primaps::testing::ReadText(dir + "/head.safetensors"));
  // head.safetensors names no block: taken.
  ASSERT_TRUE(client->LoadCheckpoint(load).ok());
  auto status = client->GetModelStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->model().dino_block(), 2);
  auto served = client->GetCheckpoint();
  ASSERT_TRUE(served.ok()) << served.status();
  // The same head marked as trained on block 1 is refused.
  SegmentationHead head = *ParseHeadCheckpoint(served->data(), "dino_vits8", 0);
  head.extra_metadata["dino_block"] = "1";
  load.set_data(SerializeHeadCheckpoint(head));
  auto refused = client->LoadCheckpoint(load);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("dino_block 1; this server serves dino_block 2"));
  EXPECT_EQ(*client->Health(), "SERVING");
}

// A model repository's version may be the reference's checkpoint itself
// (V/head.ckpt): the server serves its heads.
TEST(ReferenceCheckpointTest, RepositoryVersionsMayBeReferenceCheckpoints) {
  const std::string& dir = Checkpoints("dino_vits8");
  TempDir work;
  const std::string repo = work.path() + "/repo";
  ASSERT_EQ(std::system(("mkdir -p " + repo + "/1 && cp " + dir +
                         "/reference.ckpt " + repo + "/1/head.ckpt")
                            .c_str()),
            0);
  ServerProcess server({"--backbone=dino_vits8",
                        "--weights=" + dir + "/backbone.pth",
                        "--model_repository=" + repo, "--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  ServerProcess split({"--backbone=dino_vits8",
                       "--weights=" + dir + "/backbone.pth",
                       "--head=" + dir + "/head.safetensors", "--threads=2"});
  ASSERT_TRUE(split.started()) << split.Log();
  auto a = Client(server)->Segment(Request(64));
  auto b = Client(split)->Segment(Request(64));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->model().source(), "repository " + repo + "/1");
  EXPECT_EQ(a->model().head_version(), 1u);
  EXPECT_EQ(a->labels().png(), b->labels().png());
}

// primaps-trainer evaluate on the served checkpoint against
// score_reference.py, test.py restated in PyTorch, on the same labelled set:
// every figure without the CRF within 0.3 points, with it within 1.0.
TEST(ReferenceCheckpointTest, EvaluateScoresAsTestPyDoes) {
  const std::string& dir = Checkpoints("dino_vits8");
  TempDir work;
  const std::string val = work.path() + "/val";
  const std::string reference_json = work.path() + "/reference.json";
  const std::string command =
      absl::StrCat("/usr/bin/python3 " PRIMAPS_SOURCE_DIR
                   "/tests/golden/score_reference.py ",
                   dir, " ", val, " dino_vits8 64 > ", reference_json);
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const nlohmann::json reference =
      nlohmann::json::parse(primaps::testing::ReadText(reference_json));
  const std::string token = work.Write("token", "reference-token\n");
  ServerProcess server({"--weights=" + dir + "/reference.ckpt", "--threads=2",
                        "--admin_token_file=" + token});
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string out = work.path() + "/eval";
  const std::string log = work.path() + "/evaluate.log";
  const int code = primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
      PRIMAPS_TRAINER_BIN,
      {"evaluate", "--server=" + server.address(), "--val=" + val,
       "--out=" + out, "--checkpoint=" + dir + "/reference.ckpt",
       "--resize=64"},
      log));
  ASSERT_EQ(code, 0) << primaps::testing::ReadText(log);
  EXPECT_THAT(primaps::testing::ReadText(log),
              HasSubstr("evaluate: 6/6 images"));
  const nlohmann::json ours = nlohmann::json::parse(
      primaps::testing::ReadText(out + "/evaluation.json"));
  for (const char* head : {"theta_m", "theta_r", "linear"}) {
    for (const char* figure : {"miou", "accuracy"}) {
      EXPECT_NEAR(ours[head][figure].get<double>(),
                  reference[head][figure].get<double>(), 0.3)
          << head << " " << figure;
    }
  }
  // With the CRF (the project's permutohedral CRF against make_golden.py's
  // restatement of pydensecrf): within 1.0 point.
  for (const char* head : {"theta_m_crf", "theta_r_crf"}) {
    for (const char* figure : {"miou", "accuracy"}) {
      EXPECT_NEAR(ours[head][figure].get<double>(),
                  reference[head][figure].get<double>(), 1.0)
          << head << " " << figure;
    }
  }
  EXPECT_EQ(ours["flip_tta"], true);
  EXPECT_EQ(ours["images"], 6);
  std::printf(
      "evaluate: theta_M %.2f / %.2f (test.py %.2f / %.2f), theta_R "
      "%.2f / %.2f (%.2f / %.2f), linear %.2f / %.2f (%.2f / %.2f); with the "
      "CRF theta_M %.2f / %.2f (%.2f / %.2f), theta_R %.2f / %.2f (%.2f / "
      "%.2f)\n",
      ours["theta_m"]["miou"].get<double>(),
      ours["theta_m"]["accuracy"].get<double>(),
      reference["theta_m"]["miou"].get<double>(),
      reference["theta_m"]["accuracy"].get<double>(),
      ours["theta_r"]["miou"].get<double>(),
      ours["theta_r"]["accuracy"].get<double>(),
      reference["theta_r"]["miou"].get<double>(),
      reference["theta_r"]["accuracy"].get<double>(),
      ours["linear"]["miou"].get<double>(),
      ours["linear"]["accuracy"].get<double>(),
      reference["linear"]["miou"].get<double>(),
      reference["linear"]["accuracy"].get<double>(),
      ours["theta_m_crf"]["miou"].get<double>(),
      ours["theta_m_crf"]["accuracy"].get<double>(),
      reference["theta_m_crf"]["miou"].get<double>(),
      reference["theta_m_crf"]["accuracy"].get<double>(),
      ours["theta_r_crf"]["miou"].get<double>(),
      ours["theta_r_crf"]["accuracy"].get<double>(),
      reference["theta_r_crf"]["miou"].get<double>(),
      reference["theta_r_crf"]["accuracy"].get<double>());
  const std::string report =
      primaps::testing::ReadText(out + "/report/REPORT.md");
  EXPECT_THAT(report, HasSubstr("| theta_M (paper's figure) |"));
  EXPECT_THAT(report, HasSubstr("| 0 class 0 |"));
  // A second run, on the heads the server serves (AdminService
  // GetCheckpoint) with the class names of a dataset, finds every image's
  // features cached (an interrupted evaluation resumes) and gives the same
  // figures.
  const std::string log2 = work.path() + "/evaluate2.log";
  ASSERT_EQ(primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
                PRIMAPS_TRAINER_BIN,
                {"evaluate", "--server=" + server.address(), "--val=" + val,
                 "--out=" + out, "--admin_token_file=" + token,
                 "--dataset=cityscapes", "--resize=64"},
                log2)),
            0)
      << primaps::testing::ReadText(log2);
  EXPECT_THAT(
      primaps::testing::ReadText(log2),
      HasSubstr("head version 1 (--weights " + dir + "/reference.ckpt)"));
  const nlohmann::json again = nlohmann::json::parse(
      primaps::testing::ReadText(out + "/evaluation.json"));
  EXPECT_EQ(again["theta_m"]["miou"], ours["theta_m"]["miou"]);
  EXPECT_EQ(again["theta_r"]["accuracy"], ours["theta_r"]["accuracy"]);
  EXPECT_EQ(again["linear"]["miou"], ours["linear"]["miou"]);
  EXPECT_EQ(again["theta_m"]["per_class"]["road"],
            ours["theta_m"]["class_iou"][0]);
  EXPECT_THAT(primaps::testing::ReadText(out + "/report/REPORT.md"),
              HasSubstr("| 0 road |"));
  // Without a token the server refuses to hand out its head.
  const std::string log3 = work.path() + "/evaluate3.log";
  EXPECT_EQ(primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
                PRIMAPS_TRAINER_BIN,
                {"evaluate", "--server=" + server.address(), "--val=" + val,
                 "--out=" + out, "--resize=64"},
                log3)),
            1);
  EXPECT_THAT(primaps::testing::ReadText(log3), HasSubstr("UNAUTHENTICATED"));
}

// The presets crop at 322 for a patch-14 backbone (a multiple of 14, as
// 320 is of 8): the trainer asks the server which backbone it runs.
TEST(ReferenceCheckpointTest, PresetsCropPatch14BackbonesAt322) {
  const std::string& dir = Checkpoints("dinov2_vits14");
  TempDir work;
  const std::string data = work.path() + "/data";
  ASSERT_EQ(primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
                PRIMAPS_TRAINER_BIN,
                {"make-dataset", "--out=" + data, "--classes=3", "--images=4",
                 "--width=40", "--height=30"},
                work.path() + "/make.log")),
            0);
  ServerProcess server({"--weights=" + dir + "/reference.ckpt", "--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  const std::string log = work.path() + "/train.log";
  ASSERT_EQ(primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
                PRIMAPS_TRAINER_BIN,
                {"--preset=potsdam3", "--server=" + server.address(),
                 "--train=" + data, "--out=" + work.path() + "/run",
                 "--steps=1", "--baseline_steps=0", "--pca_images=4",
                 "--batch=2", "--linear_lr=0"},
                log)),
            0)
      << primaps::testing::ReadText(log);
  EXPECT_THAT(primaps::testing::ReadText(log),
              HasSubstr("crop and validation resize 322 for dinov2_vits14"));
}

// --init_checkpoint as the reference's --cluster-ckpt-path: a baseline
// run's cluster centres become theta_R and theta_M (gain 1), instead of the
// PCA and the baseline.
TEST(ReferenceCheckpointTest, TrainerStartsFromABaselineCheckpoint) {
  const std::string& dir = Checkpoints("dino_vits8");
  TempDir work;
  const std::string data = work.path() + "/data";
  ASSERT_EQ(primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
                PRIMAPS_TRAINER_BIN,
                {"make-dataset", "--out=" + data, "--classes=5", "--images=4",
                 "--width=40", "--height=30"},
                work.path() + "/make.log")),
            0);
  ServerProcess server({"--backbone=dino_vits8",
                        "--weights=" + dir + "/backbone.pth", "--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  auto train = [&](const std::string& classes, const std::string& log) {
    return primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
        PRIMAPS_TRAINER_BIN,
        {"--server=" + server.address(), "--train=" + data, "--val=" + data,
         "--out=" + work.path() + "/run", "--classes=" + classes, "--steps=0",
         "--resize=64", "--eval_crf=false",
         "--init_checkpoint=" + dir + "/baseline.ckpt"},
        log));
  };
  const std::string log = work.path() + "/train.log";
  ASSERT_EQ(train("5", log), 0) << primaps::testing::ReadText(log);
  EXPECT_THAT(primaps::testing::ReadText(log),
              HasSubstr("initialized from " + dir +
                        "/baseline.ckpt (cluster_probe.cluster_centers)"));
  EXPECT_THAT(primaps::testing::ReadText(log),
              ::testing::Not(HasSubstr("PCA initialization")));
  EXPECT_THAT(primaps::testing::ReadText(work.path() + "/run/metrics.jsonl"),
              HasSubstr("\"phase\":\"init_checkpoint\""));
  const SegmentationHead baseline = *ParseAnyHeadCheckpoint(
      primaps::testing::ReadText(dir + "/baseline.ckpt"), "", 0);
  auto trained = ParseHeadCheckpoint(
      primaps::testing::ReadText(work.path() +
                                 "/run/checkpoints/step_00000000.safetensors"),
      "dino_vits8", 0);
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->theta_r.v, baseline.theta_m.v);
  EXPECT_EQ(trained->theta_m.v, baseline.theta_m.v);
  EXPECT_EQ(trained->theta_r.g, std::vector<float>(5, 1.f));
  EXPECT_EQ(trained->theta_m.g, std::vector<float>(5, 1.f));
  // Another class count is refused by name.
  const std::string log3 = work.path() + "/train3.log";
  EXPECT_EQ(train("3", log3), 1);
  EXPECT_THAT(primaps::testing::ReadText(log3),
              HasSubstr("/baseline.ckpt has 5 classes; --classes is 3"));
}

TEST(ReferenceCheckpointTest, EvaluateRefusesWhatIsNoHead) {
  const std::string& dir = Checkpoints("dino_vits8");
  TempDir work;
  const std::string log = work.path() + "/evaluate.log";
  const int code = primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
      PRIMAPS_TRAINER_BIN,
      {"evaluate", "--server=127.0.0.1:1", "--val=" + work.path(),
       "--out=" + work.path() + "/out", "--checkpoint=" + dir + "/stego.ckpt"},
      log));
  EXPECT_EQ(code, 1);
  EXPECT_THAT(primaps::testing::ReadText(log),
              HasSubstr(dir + "/stego.ckpt: this is a STEGO checkpoint"));
}

}  // namespace
}  // namespace primaps
