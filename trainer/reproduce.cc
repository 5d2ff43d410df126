#include "trainer/reproduce.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "client/label_job.h"
#include "datasets/prepare.h"
#include "trainer/feature_source.h"
#include "trainer/report.h"

namespace primaps {
namespace fs = std::filesystem;
namespace {

void Log(const std::string& line) {
  LogInfo(absl::StrCat("reproduce: ", line));
}

// Runs `phase` unless its marker says it is done, then writes the marker.
absl::Status Phase(const std::string& root, const std::string& name,
                   const std::function<absl::Status()>& phase) {
  const std::string marker = absl::StrCat(root, "/", name, ".done");
  if (fs::exists(marker)) {
    Log(absl::StrCat(name, ": done in an earlier run"));
    return absl::OkStatus();
  }
  Log(absl::StrCat(name, ": starting"));
  const absl::Time start = absl::Now();
  RETURN_IF_ERROR(phase());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  Log(absl::StrCat(name, ": done in ", static_cast<int64_t>(seconds), " s"));
  return WriteFileAtomically(marker, absl::StrCat(seconds, " s\n"));
}

absl::Status Prepare(const ReproduceOptions& o, const std::string& split,
                     const std::string& list, const std::string& out) {
  PrepareOptions p;
  p.dataset = o.dataset;
  p.layout.root = o.data;
  // Potsdam's evaluation split is its labelled test list.
  p.layout.split = split;
  p.layout.list_file = list;
  p.out = out;
  p.progress = [&](const std::string& line) {
    Log(absl::StrCat("prepare ", line));
  };
  return PrepareDataset(p).status();
}

}  // namespace

absl::Status RunReproduce(const ReproduceOptions& options) {
  const std::string root = options.trainer.out_dir;
  if (root.empty()) return absl::InvalidArgumentError("no --out");
  // The pseudo labels and the training share the preset's crop size.
  ReproduceOptions o = options;
  ASSIGN_OR_RETURN(o.trainer, ResolveFromServers(options.trainer));
  RETURN_IF_ERROR(CreateDirectories(root));
  const std::string train = root + "/data/train", val = root + "/data/val";
  const std::string precomputed = root + "/precomputed";
  RETURN_IF_ERROR(Phase(root, "prepare", [&]() -> absl::Status {
    RETURN_IF_ERROR(Prepare(o, "train", o.list_file, train));
    return Prepare(o, "val", o.val_list_file, val);
  }));
  RETURN_IF_ERROR(Phase(root, "precompute", [&]() -> absl::Status {
    LabelJobOptions job;
    job.servers = o.trainer.servers;
    job.input = train + "/images";
    job.labels_dir = train + "/labels";
    job.output = precomputed;
    job.layout = "reference";
    job.resize = o.trainer.resize;
    job.concurrency = o.label_concurrency;
    job.stop = o.trainer.stop;
    ASSIGN_OR_RETURN(const LabelJobSummary s, RunLabelJob(job));
    if (s.interrupted)
      return absl::CancelledError("precompute interrupted; rerun to continue");
    if (s.failed > 0) {
      return absl::DataLossError(
          absl::StrCat(s.failed, " images failed (see ", precomputed,
                       "/manifest-*.jsonl); rerun to retry them"));
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(Phase(root, "train", [&]() -> absl::Status {
    TrainerOptions t = o.trainer;
    t.train_dir = precomputed;
    t.val_dir = val;
    t.out_dir = root + "/run";
    // A checkpoint from an interrupted run continues it.
    t.resume = fs::is_directory(t.out_dir + "/checkpoints");
    return RunTrainer(t);
  }));
  return Phase(root, "report", [&] {
    ReportOptions r;
    r.run_dir = root + "/run";
    r.dataset = o.dataset;
    r.stacked_on = o.stacked_on;
    return WriteReport(r);
  });
}

}  // namespace primaps
