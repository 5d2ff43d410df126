// Reads tensors from the zip-format files torch.save writes (PyTorch >= 1.6):
// `<name>/data.pkl` holds a pickle whose tensors point at storages stored as
// `<name>/data/<key>`. Uses the restricted unpickler; nothing is executed.
#ifndef PRIMAPS_ENGINE_CHECKPOINT_PTH_READER_H_
#define PRIMAPS_ENGINE_CHECKPOINT_PTH_READER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/checkpoint/tensor_record.h"

namespace primaps {

struct PthStateDict {
  TensorMap tensors;
  // Where the state dict was found: "" for the top level, or the key of the
  // nested dict ("teacher" for DINO training checkpoints, "model",
  // "state_dict"), or "hp" for HP's checkpoints, whose
  // net_model_state_dict, cluster_model_state_dict and
  // linear_model_state_dict are read as "net.*", "cluster_probe.*" and
  // "linear_probe.*" (the names of STEGO's Lightning state dict).
  std::string source;
  // The keys of the top-level dict (e.g. a Lightning checkpoint's "epoch",
  // "state_dict", "hyper_parameters", "pytorch-lightning_version").
  std::vector<std::string> top_level_keys;
  // The training options a checkpoint carries, as text: the scalar fields
  // of `hyper_parameters["opts"]` (an argparse.Namespace, as train.py's
  // save_hyperparameters() stores it) or of `hyper_parameters` itself;
  // lists of scalars are joined with ",". Empty when there are none. An
  // OmegaConf config among them (STEGO's "cfg") adds its scalar leaves as
  // "cfg.model_type", "cfg.dim", ...
  std::map<std::string, std::string> hyper_parameters;
};

// Finds the state dict in a torch.save archive and materializes its tensors
// as dense row-major records in their stored dtype. Non-tensor entries of a
// nested training checkpoint (optimizer state, arguments) are ignored; a
// non-tensor entry inside the state dict is an error naming it.
absl::StatusOr<PthStateDict> ReadPthStateDict(absl::string_view bytes);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CHECKPOINT_PTH_READER_H_
