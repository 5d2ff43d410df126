// primaps-trainer: PriMaPs-EM through running servers.
//
//   primaps-trainer --server=HOST:PORT[,...] --train=DIR --classes=K --out=DIR
//   [--val=DIR]
//       [--steps=N] [--batch=32] [--push_every=N] [--resume]
//       [--admin_token_file=PATH]
//   primaps-trainer make-dataset --out=DIR --classes=K [--images=N] [--width=W]
//   [--height=H] [--seed=S] [--layout=project|cityscapes [--split=S]]
//   primaps-trainer prepare --dataset=cityscapes|cocostuff27|potsdam3
//       --data=ROOT --split=train|val|... --out=DIR [--list=FILE]
//   primaps-trainer reproduce --preset=cityscapes|cocostuff27|potsdam3
//       --data=ROOT --server=HOST:PORT[,...] --out=DIR [training flags]
//   primaps-trainer report --out=RUN [--dataset=NAME]
//   primaps-trainer evaluate --server=HOST:PORT --val=DIR --out=DIR
//       [--checkpoint=FILE | --admin_token_file=PATH] [--dataset=NAME]
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <set>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/cpu_support.h"
#include "base/file_util.h"
#include "base/log.h"
#include "datasets/prepare.h"
#include "trainer/evaluate_command.h"
#include "trainer/report.h"
#include "trainer/reproduce.h"
#include "trainer/synthetic_dataset.h"
#include "trainer/trainer.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "Servers HOST:PORT[,HOST:PORT...].");
ABSL_FLAG(std::string, train, "", "Training set: DIR/images.");
ABSL_FLAG(std::string, val, "", "Validation set: DIR/images and DIR/labels.");
ABSL_FLAG(std::string, out, "",
          "Output directory (checkpoints, cache, metrics.jsonl).");
ABSL_FLAG(std::string, preset, "",
          "cityscapes, cocostuff27 or potsdam3: the reference's protocol "
          "(experiments.sh) for the dataset: classes, 320 crops, batch 32, "
          "PCA over 93 shuffled batches, 2 baseline epochs, 50 PriMaPs-EM "
          "epochs, evaluation every epoch (every 100 steps on COCO-Stuff). "
          "With _stego or _hp (cityscapes_stego, potsdam3_hp, ...): "
          "+SotA+PriMaPs on a server serving that checkpoint: no PCA and no "
          "baseline, the heads start from its cluster probe. Flags given on "
          "the command line override it.");
ABSL_FLAG(int32_t, classes, 27, "Number of classes K.");
ABSL_FLAG(int32_t, steps, 1000, "PriMaPs-EM steps.");
ABSL_FLAG(int32_t, epochs, 0,
          "PriMaPs-EM epochs of floor(images / batch) steps; overrides "
          "--steps when > 0.");
ABSL_FLAG(int32_t, baseline_epochs, 0,
          "Cosine k-means baseline epochs; overrides --baseline_steps when > "
          "0.");
ABSL_FLAG(bool, eval_every_epoch, false,
          "Evaluate after every PriMaPs-EM epoch (overrides --eval_every).");
ABSL_FLAG(int32_t, batch, 32, "Images per step.");
ABSL_FLAG(int32_t, resize, 320, "Crop size (short side, center crop).");
ABSL_FLAG(double, lr, 5e-3, "Adam learning rate.");
ABSL_FLAG(double, gamma, 2.0, "Focal loss gamma.");
ABSL_FLAG(double, linear_lr, 0,
          "Learning rate of the supervised linear probe trained on the "
          "training set's ground truth (labels/ or gts/) beside the heads and "
          "reported as an upper bound; 0 = none.");
ABSL_FLAG(int32_t, pca_images, 0,
          "Images for the PCA initialization (0 = one batch).");
ABSL_FLAG(int32_t, baseline_steps, 0,
          "Cosine k-means baseline steps after the PCA init.");
ABSL_FLAG(int32_t, checkpoint_every, 100, "Write a checkpoint every N steps.");
ABSL_FLAG(int32_t, push_every, 0,
          "Push the head into the servers every N steps (0 = never).");
ABSL_FLAG(int32_t, eval_every, 0,
          "Evaluate on --val every N steps (0 = after init and at the end).");
ABSL_FLAG(bool, eval_crf, true, "Also evaluate with the dense CRF.");
ABSL_FLAG(std::string, init_checkpoint, "",
          "Start PriMaPs-EM from this checkpoint's prototypes instead of the "
          "PCA and the baseline (the reference's --cluster-ckpt-path): a "
          "baseline run's train.py .ckpt or a head .safetensors.");
ABSL_FLAG(std::string, checkpoint, "",
          "evaluate: the heads to score (a head .safetensors or the "
          "reference's train.py .ckpt); empty: the head the first --server "
          "serves (with --admin_token_file).");
ABSL_FLAG(bool, flip_tta, true,
          "evaluate: average the features of each image and its mirror, as "
          "test.py does.");
ABSL_FLAG(bool, resume, false, "Continue from the newest checkpoint in --out.");
ABSL_FLAG(std::string, publish, "",
          "Model repository to publish heads into (the servers follow it "
          "with --model_repository).");
ABSL_FLAG(int32_t, publish_every, 0,
          "Publish every N steps; 0 = with every checkpoint.");
ABSL_FLAG(double, publish_max_miou_drop, -1,
          "Publish only when theta_M's validation mIoU is at most this much "
          "below the last published version's; < 0 = always.");
ABSL_FLAG(std::string, admin_token_file, "",
          "Admin token for --push_every, and for evaluate without "
          "--checkpoint.");
ABSL_FLAG(int32_t, seed, 1, "Seed for the batch order and the augmentations.");
ABSL_FLAG(int32_t, fetch_concurrency, 4, "Concurrent feature requests.");
ABSL_FLAG(int32_t, images, 32, "make-dataset: number of images.");
ABSL_FLAG(std::string, layout, "project",
          "make-dataset: project (DIR/images + DIR/labels) or cityscapes (a "
          "miniature Cityscapes split, --split, in the official layout under "
          "--out).");
ABSL_FLAG(int32_t, width, 160, "make-dataset: image width.");
ABSL_FLAG(int32_t, height, 120, "make-dataset: image height.");
ABSL_FLAG(std::string, dataset, "",
          "prepare: cityscapes, cocostuff27 or potsdam3.");
ABSL_FLAG(std::string, data, "",
          "prepare: the dataset's root in its official layout.");
ABSL_FLAG(std::string, split, "train",
          "prepare: the split (train, val; Potsdam also unlabelled_train, "
          "train+val, all).");
ABSL_FLAG(std::string, list, "",
          "prepare: COCO-Stuff image list (default: "
          "ROOT/curated/<split>2017/Coco164kFull_Stuff_Coarse_7.txt).");

namespace {
std::atomic<bool> g_stop{false};

// The reference's experiments.sh for one dataset, over the options the user
// did not set on the command line (`given`).
// A preset's dataset, and the method PriMaPs-EM is stacked on ("stego",
// "hp") or "" for PriMaPs-EM alone: "cityscapes_stego" is {cityscapes,
// stego}.
struct PresetName {
  std::string dataset;
  std::string on;
};
PresetName SplitPreset(const std::string& name) {
  for (const char* on : {"stego", "hp"}) {
    const std::string suffix = absl::StrCat("_", on);
    if (absl::EndsWith(name, suffix))
      return {name.substr(0, name.size() - suffix.size()), on};
  }
  return {name, ""};
}

bool ApplyPreset(const std::string& preset, const std::set<std::string>& given,
                 primaps::TrainerOptions* o) {
  auto Given = [&](const char* flag) { return given.count(flag) > 0; };
  const auto [name, on] = SplitPreset(preset);
  int classes;
  if (name == "cityscapes" || name == "cocostuff27") {
    classes = 27;
  } else if (name == "potsdam3") {
    classes = 3;
  } else {
    return false;
  }
  if (!Given("classes")) o->classes = classes;
  // 320, or 322 for a patch-14 backbone (decided with the server's answer).
  if (!Given("resize")) o->resize = 0;
  if (!Given("batch")) o->batch = 32;
  if (!Given("lr")) o->learning_rate = 5e-3;
  if (!Given("gamma")) o->focal_gamma = 2.0;
  if (!Given("linear_lr")) o->linear_learning_rate = 5e-3;
  // --num-batch-pcainit 92: batches 0..92 of the shuffled loader.
  if (!Given("pca_images")) o->pca_images = 93 * o->batch;
  if (!Given("baseline_steps") && !Given("baseline_epochs"))
    o->baseline_epochs = 2;
  if (!Given("steps") && !Given("epochs")) o->epochs = 50;
  if (!Given("eval_every") && !Given("eval_every_epoch")) {
    // COCO-Stuff validates every 100 steps, the others every epoch.
    if (name == "cocostuff27") {
      o->eval_every = 100;
    } else {
      o->eval_every_epoch = true;
    }
  }
  // +SotA+PriMaPs (the seed's README): on top of STEGO (ViT-B/8) or HP
  // (ViT-S/8), no PCA and no baseline: the heads start from the served
  // checkpoint's cluster probe; the rest as above (focal 2, batch 32, 320,
  // 50 epochs, EMA every 10 steps at 0.98, Adam 5e-3).
  if (!on.empty()) {
    if (!Given("baseline_steps") && !Given("baseline_epochs"))
      o->baseline_epochs = 0;
    if (!Given("init_checkpoint")) o->init_checkpoint = "served";
  }
  return true;
}
void RequestStop(int) { g_stop = true; }
}  // namespace

// Reads --admin_token_file when given; false (after saying why) when it
// cannot be read.
bool AdminToken(std::string* token) {
  const std::string path = absl::GetFlag(FLAGS_admin_token_file);
  if (path.empty()) return true;
  auto read = primaps::ReadTokenFile(path);
  if (!read.ok()) {
    std::fprintf(stderr, "primaps-trainer: %s\n",
                 std::string(read.status().message()).c_str());
    return false;
  }
  *token = *read;
  return true;
}

int main(int argc, char** argv) {
  primaps::SetUsage(
      "PriMaPs-EM through running primaps-servers.\n\n"
      "  primaps-trainer --server=HOST:PORT --train=DIR --out=DIR [--val=DIR] "
      "[--preset=NAME] [flags]\n"
      "  primaps-trainer reproduce --preset=NAME --data=ROOT "
      "--server=HOST:PORT "
      "--out=DIR\n"
      "  primaps-trainer prepare --dataset=NAME --data=ROOT --split=S "
      "--out=DIR\n"
      "  primaps-trainer report --out=RUN [--dataset=NAME]\n"
      "  primaps-trainer evaluate --server=HOST:PORT --val=DIR --out=DIR "
      "[--checkpoint=FILE | --admin_token_file=PATH] [--dataset=NAME] "
      "[--flip_tta=true]\n"
      "  primaps-trainer make-dataset --out=DIR [--layout=cityscapes]\n\n"
      "--help lists the flags.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  primaps::SetLogProgramName("primaps-trainer");
  if (!primaps::CpuCanRunThisBuild("primaps-trainer")) return 1;
  if (args.size() >= 2 && std::string(args[1]) == "make-dataset") {
    primaps::SyntheticDatasetOptions options;
    options.classes = absl::GetFlag(FLAGS_classes);
    options.images = absl::GetFlag(FLAGS_images);
    options.width = absl::GetFlag(FLAGS_width);
    options.height = absl::GetFlag(FLAGS_height);
    options.seed = static_cast<uint32_t>(absl::GetFlag(FLAGS_seed));
    const std::string layout = absl::GetFlag(FLAGS_layout);
    if (layout != "project" && layout != "cityscapes") {
      std::fprintf(stderr,
                   "primaps-trainer make-dataset: --layout is \"%s\"; "
                   "expected project or cityscapes\n",
                   layout.c_str());
      return 2;
    }
    const absl::Status status =
        layout == "cityscapes"
            ? primaps::WriteSyntheticCityscapes(
                  absl::GetFlag(FLAGS_out), absl::GetFlag(FLAGS_split), options)
            : primaps::WriteSyntheticDataset(absl::GetFlag(FLAGS_out), options);
    if (!status.ok()) {
      std::fprintf(stderr, "primaps-trainer make-dataset: %s\n",
                   std::string(status.message()).c_str());
      return 1;
    }
    std::printf("wrote %d images with %d classes to %s\n", options.images,
                options.classes, absl::GetFlag(FLAGS_out).c_str());
    return 0;
  }
  if (args.size() >= 2 && std::string(args[1]) == "prepare") {
    primaps::PrepareOptions options;
    options.dataset = absl::GetFlag(FLAGS_dataset);
    options.layout.root = absl::GetFlag(FLAGS_data);
    options.layout.split = absl::GetFlag(FLAGS_split);
    options.layout.list_file = absl::GetFlag(FLAGS_list);
    options.out = absl::GetFlag(FLAGS_out);
    if (options.dataset.empty() || options.layout.root.empty() ||
        options.out.empty()) {
      std::fprintf(stderr,
                   "primaps-trainer prepare: --dataset, --data and --out are "
                   "required\n");
      return 2;
    }
    options.progress = [](const std::string& line) {
      std::fprintf(stderr, "primaps-trainer prepare: %s\n", line.c_str());
    };
    const auto report = primaps::PrepareDataset(options);
    if (!report.ok()) {
      std::fprintf(stderr, "primaps-trainer prepare: %s\n",
                   report.status().ToString().c_str());
      return 1;
    }
    std::printf("prepared %lld images (%lld labelled) of %s %s in %s\n",
                static_cast<long long>(report->images),
                static_cast<long long>(report->labelled),
                options.dataset.c_str(), options.layout.split.c_str(),
                options.out.c_str());
    return 0;
  }
  const std::string command = args.size() >= 2 ? args[1] : "";
  if (command == "report") {
    primaps::ReportOptions r;
    r.run_dir = absl::GetFlag(FLAGS_out);
    r.dataset = absl::GetFlag(FLAGS_dataset);
    if (r.dataset.empty())
      r.dataset = SplitPreset(absl::GetFlag(FLAGS_preset)).dataset;
    r.stacked_on = SplitPreset(absl::GetFlag(FLAGS_preset)).on;
    const absl::Status status = primaps::WriteReport(r);
    if (!status.ok()) {
      std::fprintf(stderr, "primaps-trainer report: %s\n",
                   status.ToString().c_str());
      return 1;
    }
    std::printf("wrote %s/report/REPORT.md\n", r.run_dir.c_str());
    return 0;
  }
  if (command == "evaluate") {
    primaps::EvaluateOptions e;
    for (absl::string_view s :
         absl::StrSplit(absl::GetFlag(FLAGS_server), ',', absl::SkipEmpty())) {
      e.servers.emplace_back(s);
    }
    e.val_dir = absl::GetFlag(FLAGS_val);
    e.out_dir = absl::GetFlag(FLAGS_out);
    e.checkpoint = absl::GetFlag(FLAGS_checkpoint);
    // 0 (not given): test.py's 320, or 322 for patch-14 heads.
    if (primaps::FlagsGiven(argc, argv).count("resize"))
      e.resize = absl::GetFlag(FLAGS_resize);
    e.flip_tta = absl::GetFlag(FLAGS_flip_tta);
    e.crf = absl::GetFlag(FLAGS_eval_crf);
    e.dataset = absl::GetFlag(FLAGS_dataset);
    if (e.dataset.empty())
      e.dataset = SplitPreset(absl::GetFlag(FLAGS_preset)).dataset;
    if (!AdminToken(&e.admin_token)) return 2;
    const absl::Status status = primaps::RunEvaluate(e);
    if (!status.ok()) {
      std::fprintf(stderr, "primaps-trainer evaluate: %s\n",
                   status.ToString().c_str());
      return 1;
    }
    std::printf("wrote %s/evaluation.json and %s/report/REPORT.md\n",
                e.out_dir.c_str(), e.out_dir.c_str());
    return 0;
  }
  if (!command.empty() && command != "reproduce") {
    std::fprintf(stderr,
                 "primaps-trainer: unknown command \"%s\"; expected "
                 "make-dataset, prepare, evaluate, reproduce, report or none "
                 "(train)\n",
                 command.c_str());
    return 2;
  }
  const bool reproduce = command == "reproduce";
  primaps::TrainerOptions o;
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_server), ',', absl::SkipEmpty())) {
    o.servers.emplace_back(s);
  }
  o.train_dir = absl::GetFlag(FLAGS_train);
  o.val_dir = absl::GetFlag(FLAGS_val);
  o.out_dir = absl::GetFlag(FLAGS_out);
  if (reproduce ? (absl::GetFlag(FLAGS_preset).empty() ||
                   absl::GetFlag(FLAGS_data).empty() || o.out_dir.empty())
                : (o.train_dir.empty() || o.out_dir.empty())) {
    std::fprintf(stderr,
                 reproduce
                     ? "primaps-trainer reproduce: --preset, --data and "
                       "--out are required\n"
                     : "primaps-trainer: --train and --out are required\n");
    return 2;
  }
  o.classes = absl::GetFlag(FLAGS_classes);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.baseline_epochs = absl::GetFlag(FLAGS_baseline_epochs);
  o.eval_every_epoch = absl::GetFlag(FLAGS_eval_every_epoch);
  o.batch = absl::GetFlag(FLAGS_batch);
  o.resize = absl::GetFlag(FLAGS_resize);
  o.learning_rate = absl::GetFlag(FLAGS_lr);
  o.focal_gamma = absl::GetFlag(FLAGS_gamma);
  o.linear_learning_rate = absl::GetFlag(FLAGS_linear_lr);
  o.pca_images = absl::GetFlag(FLAGS_pca_images);
  o.init_checkpoint = absl::GetFlag(FLAGS_init_checkpoint);
  o.baseline_steps = absl::GetFlag(FLAGS_baseline_steps);
  o.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  o.push_every = absl::GetFlag(FLAGS_push_every);
  o.publish_dir = absl::GetFlag(FLAGS_publish);
  o.publish_every = absl::GetFlag(FLAGS_publish_every);
  o.publish_max_miou_drop = absl::GetFlag(FLAGS_publish_max_miou_drop);
  o.eval_every = absl::GetFlag(FLAGS_eval_every);
  o.eval_crf = absl::GetFlag(FLAGS_eval_crf);
  o.resume = absl::GetFlag(FLAGS_resume);
  o.seed = static_cast<uint32_t>(absl::GetFlag(FLAGS_seed));
  o.fetch_concurrency = absl::GetFlag(FLAGS_fetch_concurrency);
  if (!AdminToken(&o.admin_token)) return 2;
  const std::string preset = absl::GetFlag(FLAGS_preset);
  if (!preset.empty() &&
      !ApplyPreset(preset, primaps::FlagsGiven(argc, argv), &o)) {
    std::fprintf(stderr,
                 "primaps-trainer: --preset is \"%s\"; expected cityscapes, "
                 "cocostuff27 or potsdam3, alone or with _stego or _hp\n",
                 preset.c_str());
    return 2;
  }
  o.stop = &g_stop;
  ::signal(SIGTERM, RequestStop);
  ::signal(SIGINT, RequestStop);
  absl::Status status;
  if (reproduce) {
    primaps::ReproduceOptions r;
    r.dataset = SplitPreset(preset).dataset;
    r.stacked_on = SplitPreset(preset).on;
    r.data = absl::GetFlag(FLAGS_data);
    r.list_file = absl::GetFlag(FLAGS_list);
    r.trainer = o;
    status = primaps::RunReproduce(r);
  } else {
    status = primaps::RunTrainer(o);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "primaps-trainer: %s\n", status.ToString().c_str());
    return status.code() == absl::StatusCode::kCancelled ? 3 : 1;
  }
  return 0;
}
