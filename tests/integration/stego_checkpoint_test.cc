// STEGO's checkpoints served from one file, against what PyTorch computes
// from the same file (tests/golden/make_stego_checkpoint.py): the
// projection's code, and the cluster predictions of the unmodified
// checkpoint.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/primaps_client.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/image/label_image.h"
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

constexpr int kResize = 64;

// The checkpoints and the golden outputs, made once per test process and
// removed at its exit.
const std::string& Checkpoints() {
  static TempDir dir;
  static const bool made = [] {
    const std::string command = absl::StrCat(
        "/usr/bin/python3 " PRIMAPS_SOURCE_DIR
        "/tests/golden/make_stego_checkpoint.py ",
        dir.path(), " ", primaps::testing::DemoImagePath("coco_example.jpg"),
        " ", kResize);
    return std::system(command.c_str()) == 0;
  }();
  EXPECT_TRUE(made);
  return dir.path();
}

v1::Preprocess Preprocess() {
  v1::Preprocess p;
  p.set_resize(kResize);
  p.set_crop(v1::CROP_MODE_CENTER);
  p.set_resize_filter(v1::RESIZE_FILTER_BILINEAR);  // as the golden
  p.set_crf(false);
  return p;
}

TensorRecord Golden(const std::string& name) {
  auto file = ParseSafetensors(primaps::testing::ReadBinary(
      Checkpoints() + "/stego_golden.safetensors"));
  EXPECT_TRUE(file.ok()) << file.status();
  return file->tensors.at(name);
}

// The demo photo's request pieces, at the golden's crop and filter.
std::string Photo() {
  return primaps::testing::ReadBinary(
      primaps::testing::DemoImagePath("coco_example.jpg"));
}

// The largest |difference| between a PROJECTION answer and PyTorch's code,
// or infinity when the sizes differ.
double MaxCodeDifference(const v1::FeatureResponse& code) {
  const std::vector<float> expected = Float32Values(Golden("code"));
  if (code.data().size() != expected.size() * 4) return INFINITY;
  const float* got = reinterpret_cast<const float*>(code.data().data());
  double worst = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    worst =
        std::max(worst, static_cast<double>(std::abs(got[i] - expected[i])));
  return worst;
}

// Percent of pixels where Segment's labels are STEGO's cluster predictions.
double AgreementWithStego(const v1::Segmentation& labels) {
  const TensorRecord truth = Golden("labels");
  const std::string& ours = labels.labels().labels();
  if (ours.size() != truth.data.size()) return 0;
  size_t same = 0;
  for (size_t i = 0; i < ours.size(); ++i)
    same += static_cast<uint8_t>(ours[i]) == truth.data[i];
  return 100.0 * same / ours.size();
}

// The code and Segment's labels of the demo photo from `client`.
void ExpectCodeAndPredictionsOfStego(PrimapsClient* client,
                                     const std::string& projection) {
  v1::FeatureRequest features;
  features.mutable_image()->set_encoded(Photo());
  *features.mutable_preprocess() = Preprocess();
  features.set_features(v1::FEATURE_KIND_PROJECTION);
  auto code = client->ExtractFeatures(features);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(code->features(), v1::FEATURE_KIND_PROJECTION);
  EXPECT_EQ(code->dim(), 70u);
  EXPECT_EQ(code->model().projection(), projection);
  const double worst = MaxCodeDifference(*code);
  EXPECT_LT(worst, 1e-3);
  v1::ImageRequest segment;
  segment.mutable_image()->set_encoded(Photo());
  *segment.mutable_preprocess() = Preprocess();
  auto labels = client->Segment(segment);
  ASSERT_TRUE(labels.ok()) << labels.status();
  // STEGO's cosine predictions on at least 99% of the pixels (ours upsample
  // the head's scores, STEGO the code; the argmax differs only where two
  // clusters nearly tie).
  const double agreement = AgreementWithStego(*labels);
  EXPECT_GE(agreement, 99.0);
  std::printf(
      "%s: code within %.2g of PyTorch; Segment agrees with the cluster "
      "predictions on %.2f%%\n",
      projection.c_str(), worst, agreement);
}

TEST(StegoCheckpointTest, ServesTheProjectionAndTheClusterProbe) {
  const std::string dir = Checkpoints();
  ServerProcess server({"--weights=" + dir + "/stego.ckpt", "--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  EXPECT_THAT(server.Log(),
              HasSubstr("--weights is STEGO's checkpoint: dino_vits8, "
                        "projection to 70 channels, 5 clusters"));
  auto client = Client(server);
  ExpectCodeAndPredictionsOfStego(client.get(), "stego");
  v1::FeatureRequest features;
  features.mutable_image()->set_encoded(Photo());
  *features.mutable_preprocess() = Preprocess();
  // The backbone's features are still there (PriMaPs reads them).
  features.set_features(v1::FEATURE_KIND_BACKBONE);
  auto backbone = client->ExtractFeatures(features);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  EXPECT_EQ(backbone->dim(), 384u);
  EXPECT_EQ(backbone->model().projection(), "stego");
  EXPECT_EQ(backbone->model().projection_dim(), 70u);
  EXPECT_EQ(backbone->model().projection_source(), dir + "/stego.ckpt");
  EXPECT_EQ(backbone->model().projection_digest().size(), 64u);

  v1::ImageRequest segment;
  segment.mutable_image()->set_encoded(Photo());
  *segment.mutable_preprocess() = Preprocess();
  // PriMaPs' masks come from the backbone's features: the same as a server
  // of the ViT alone.
  ServerProcess plain({"--backbone=dino_vits8",
                       "--weights=" + dir + "/backbone.pth", "--threads=2"});
  ASSERT_TRUE(plain.started()) << plain.Log();
  v1::ImageRequest propose = segment;
  auto masks = client->ProposeMasks(propose);
  auto plain_masks = Client(plain)->ProposeMasks(propose);
  ASSERT_TRUE(masks.ok()) << masks.status();
  ASSERT_TRUE(plain_masks.ok()) << plain_masks.status();
  EXPECT_GT(masks->mask_count(), 0u);
  EXPECT_EQ(masks->mask_count(), plain_masks->mask_count());
  EXPECT_EQ(masks->masks().labels(), plain_masks->masks().labels());
  // PriMaPs pseudo labels on a STEGO server: masks from the backbone
  // features, classes from the head on the code.
  auto pseudo = client->PseudoLabel(segment);
  ASSERT_TRUE(pseudo.ok()) << pseudo.status();
  EXPECT_EQ(pseudo->model().classes(), 5u);
}

// HP's checkpoint of the same weights: the same code and predictions.
TEST(StegoCheckpointTest, ServesHpCheckpoints) {
  const std::string dir = Checkpoints();
  ServerProcess server({"--weights=" + dir + "/hp.pth", "--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  EXPECT_THAT(server.Log(),
              HasSubstr("--weights is HP's checkpoint: dino_vits8, "
                        "projection to 70 channels, 5 clusters"));
  ExpectCodeAndPredictionsOfStego(Client(server).get(), "hp");
}

TEST(StegoCheckpointTest, ProjectionFeaturesNeedAProjection) {
  ServerProcess server({"--threads=2"});
  ASSERT_TRUE(server.started()) << server.Log();
  v1::FeatureRequest features;
  features.mutable_image()->set_encoded(Photo());
  features.set_features(v1::FEATURE_KIND_PROJECTION);
  auto code = Client(server)->ExtractFeatures(features);
  EXPECT_EQ(code.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(code.status().message()),
              HasSubstr("this server's backbone has no projection"));
}

TEST(StegoCheckpointTest, BadCheckpointsAreRefusedByName) {
  const std::string dir = Checkpoints();
  const std::pair<const char*, const char*> cases[] = {
      {"stego_no_cluster1.ckpt",
       "no net.cluster1.0.weight / net.cluster1.0.bias"},
      {"stego_linear.ckpt",
       "cfg.projection_type is linear; only STEGO's linear + nonlinear "
       "projection (nonlinear) is served"},
      {"stego_bad_dim.ckpt",
       "cluster_probe.clusters is [5, 72]; expected [K, 70]"},
  };
  for (const auto& [file, message] : cases) {
    ServerProcess server({"--weights=" + dir + "/" + file});
    EXPECT_FALSE(server.started()) << file;
    EXPECT_THAT(server.Log(), HasSubstr(message)) << file;
  }
  // A corrupted pickle: the archive's data.pkl cut short.
  TempDir cut;
  const std::string rewrite = absl::StrCat(
      "/usr/bin/python3 -c \"import zipfile, sys\n"
      "src = zipfile.ZipFile(sys.argv[1])\n"
      "dst = zipfile.ZipFile(sys.argv[2], 'w')\n"
      "for i in src.infolist():\n"
      "    data = src.read(i.filename)\n"
      "    dst.writestr(i, data[:3000] if i.filename.endswith('data.pkl') "
      "else data)\n"
      "dst.close()\" ",
      dir, "/stego.ckpt ", cut.path(), "/stego.ckpt");
  ASSERT_EQ(std::system(rewrite.c_str()), 0) << rewrite;
  ServerProcess corrupt({"--weights=" + cut.path() + "/stego.ckpt"});
  EXPECT_FALSE(corrupt.started());
  EXPECT_THAT(corrupt.Log(),
              HasSubstr("--weights " + cut.path() + "/stego.ckpt: pickle"));
  // A head for the backbone's features is refused by a STEGO server, and
  // the server keeps serving its own.
  TempDir work;
  const std::string token = work.Write("token", "stego-token\n");
  ServerProcess server({"--weights=" + dir + "/stego.ckpt", "--threads=2",
                        "--admin_token_file=" + token});
  ASSERT_TRUE(server.started()) << server.Log();
  auto client = Client(server, "stego-token");
  auto served = client->GetCheckpoint();
  ASSERT_TRUE(served.ok()) << served.status();
  v1::LoadCheckpointRequest load;
  load.set_data(served->data());  // its own head: taken again
  ASSERT_TRUE(client->LoadCheckpoint(load).ok());
  SegmentationHead head = *ParseHeadCheckpoint(served->data(), "", 0);
  head.extra_metadata.erase("projection_digest");
  v1::LoadCheckpointRequest other;
  other.set_data(SerializeHeadCheckpoint(head));
  auto refused = client->LoadCheckpoint(other);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("the head reads the backbone's features; this "
                        "server's heads read the code of projection "));
  EXPECT_EQ(*client->Health(), "SERVING");
}

// +SotA+PriMaPs: PriMaPs-EM on top of STEGO through a live server. The
// heads start from the checkpoint's cluster probe (no PCA, no baseline), so
// the first evaluation scores the checkpoint's own predictions (what
// `evaluate` gives for the served head); the trained head reads the same
// projection and the server takes it.
TEST(StegoCheckpointTest, PrimapsEmOnTopOfStego) {
  const std::string dir = Checkpoints();
  TempDir work;
  const std::string data = work.path() + "/data";
  auto run = [&](std::vector<std::string> args, const std::string& log) {
    return primaps::testing::WaitProcess(primaps::testing::SpawnProcess(
        PRIMAPS_TRAINER_BIN, std::move(args), work.path() + "/" + log));
  };
  ASSERT_EQ(run({"make-dataset", "--out=" + data, "--classes=5", "--images=4",
                 "--width=48", "--height=40"},
                "make.log"),
            0);
  const std::string token = work.Write("token", "stego-token\n");
  ServerProcess server({"--weights=" + dir + "/stego.ckpt", "--threads=2",
                        "--admin_token_file=" + token});
  ASSERT_TRUE(server.started()) << server.Log();
  ASSERT_EQ(
      run({"evaluate", "--server=" + server.address(), "--val=" + data,
           "--out=" + work.path() + "/eval", "--resize=64", "--flip_tta=false",
           "--eval_crf=false", "--admin_token_file=" + token},
          "evaluate.log"),
      0)
      << primaps::testing::ReadText(work.path() + "/evaluate.log");
  ASSERT_EQ(
      run({"--server=" + server.address(), "--train=" + data, "--val=" + data,
           "--classes=5", "--out=" + work.path() + "/run", "--steps=3",
           "--batch=2", "--resize=64", "--eval_crf=false", "--push_every=3",
           "--admin_token_file=" + token},
          "train.log"),
      0)
      << primaps::testing::ReadText(work.path() + "/train.log");
  const std::string log =
      primaps::testing::ReadText(work.path() + "/train.log");
  EXPECT_THAT(log, HasSubstr("the heads read dino_vits8's stego projection "
                             "(70 channels)"));
  EXPECT_THAT(log,
              HasSubstr("initialized from served (cluster_probe.clusters)"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("PCA initialization")));
  EXPECT_THAT(log, HasSubstr("pushed step 3"));
  const std::string evaluation =
      primaps::testing::ReadText(work.path() + "/eval/evaluation.json");
  std::istringstream metrics(
      primaps::testing::ReadText(work.path() + "/run/metrics.jsonl"));
  std::string first;
  std::getline(metrics, first);
  EXPECT_THAT(first, HasSubstr("\"phase\":\"init_checkpoint\""));
  // theta_M's figures of the first evaluation, as evaluate wrote them for
  // the served head.
  const nlohmann::json a = nlohmann::json::parse(first),
                       b = nlohmann::json::parse(evaluation);
  EXPECT_EQ(a["theta_m"]["miou"], b["theta_m"]["miou"]);
  EXPECT_EQ(a["theta_m"]["accuracy"], b["theta_m"]["accuracy"]);
  std::printf(
      "first evaluation on top of STEGO: theta_M mIoU %.2f (evaluate "
      "of the served head: %.2f)\n",
      a["theta_m"]["miou"].get<double>(), b["theta_m"]["miou"].get<double>());
  ClientOptions options;
  options.target = server.address();
  options.admin_token = "stego-token";
  auto status = (*PrimapsClient::Create(options))->GetModelStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->model().head_version(), 2u);
  EXPECT_EQ(status->model().source(), "AdminService");

  // The preset of the stacked method sets the same start (no baseline, the
  // served cluster probe), and the report names the method.
  const std::string run2 = work.path() + "/run2";
  ASSERT_EQ(run({"--preset=cityscapes_stego", "--server=" + server.address(),
                 "--train=" + data, "--val=" + data, "--classes=5",
                 "--out=" + run2, "--steps=1", "--batch=2", "--resize=64",
                 "--eval_crf=false", "--admin_token_file=" + token},
                "preset.log"),
            0)
      << primaps::testing::ReadText(work.path() + "/preset.log");
  const std::string preset_log =
      primaps::testing::ReadText(work.path() + "/preset.log");
  EXPECT_THAT(preset_log, HasSubstr("0 baseline steps, 1 PriMaPs-EM steps"));
  EXPECT_THAT(preset_log, HasSubstr("initialized from served"));
  ASSERT_EQ(run({"report", "--out=" + run2, "--preset=cityscapes_stego"},
                "report.log"),
            0)
      << primaps::testing::ReadText(work.path() + "/report.log");
  EXPECT_THAT(primaps::testing::ReadText(run2 + "/report/REPORT.md"),
              HasSubstr("# STEGO+PriMaPs-EM run: cityscapes"));
}

}  // namespace
}  // namespace primaps
