// `primaps-trainer evaluate`.
#ifndef PRIMAPS_TRAINER_EVALUATE_COMMAND_H_
#define PRIMAPS_TRAINER_EVALUATE_COMMAND_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace primaps {

// `primaps-trainer evaluate`: scores a head on a labelled set as the
// reference's test.py does (docs/evaluation.md): the centre crop at the
// validation resize through torch's bilinear filter, features of the image
// and of its mirror averaged, upsampled to the labels; theta_M, theta_R
// (Hungarian-matched over the whole set, with and without the CRF) and the
// linear probe (unmatched). Writes OUT/evaluation.json.
struct EvaluateOptions {
  std::vector<std::string> servers;
  std::string val_dir;  // images/ and labels/ with the same stems
  std::string out_dir;
  // The heads: a head safetensors file or the reference's train.py .ckpt;
  // empty: the head the first server serves (needs admin_token).
  std::string checkpoint;
  std::string admin_token;
  // cityscapes, cocostuff27, potsdam3 or empty: the class names and the
  // paper's figures in the report.
  std::string dataset;
  // Validation resize; 0: 320, or 322 for patch-14 (DINOv2) heads.
  int resize = 0;
  bool flip_tta = true;
  bool crf = true;
  absl::Duration log_every = absl::Seconds(10);
};

absl::Status RunEvaluate(const EvaluateOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_EVALUATE_COMMAND_H_
