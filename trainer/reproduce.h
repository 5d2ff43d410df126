// `primaps-trainer reproduce`: the paper's protocol for one dataset, end to
// end, against running servers: prepare the official layout, precompute the
// PriMaPs pseudo labels (reference layout), PCA init, baseline and
// PriMaPs-EM (the preset), and the report. Each phase is resumable and
// marks itself done, so a rerun continues where it stopped.
#ifndef PRIMAPS_TRAINER_REPRODUCE_H_
#define PRIMAPS_TRAINER_REPRODUCE_H_

#include <string>

#include "absl/status/status.h"
#include "trainer/trainer.h"

namespace primaps {

struct ReproduceOptions {
  std::string dataset;  // cityscapes, cocostuff27, potsdam3
  // "stego" or "hp" for +SotA+PriMaPs (the servers serve that checkpoint);
  // "" for PriMaPs-EM alone. Named in the report.
  std::string stacked_on;
  std::string data;       // the official layout's root
  std::string list_file;  // COCO-Stuff: the curated list of the train split
  std::string val_list_file;
  // The training options (servers, preset values, out_dir = the run's root).
  TrainerOptions trainer;
  int label_concurrency = 8;
};

// Layout under trainer.out_dir: data/{train,val}/ (prepared), precomputed/
// (imgs/, pseudos/, gts/), run/ (checkpoints, metrics.jsonl, best.*,
// report/REPORT.md), and <phase>.done markers.
absl::Status RunReproduce(const ReproduceOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_REPRODUCE_H_
