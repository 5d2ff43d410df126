// A restricted unpickler for the subset of Python pickles that torch.save
// writes for state dicts and training checkpoints. It never executes
// anything: globals are looked up in a fixed allow-list and turned into data
// (an OrderedDict becomes a dict, _rebuild_tensor_v2 a tensor reference), and
// any other global is refused by name.
//
// Values live in one arena and refer to each other by index, so hostile
// input cannot build reference cycles or deep ownership chains.
#ifndef PRIMAPS_ENGINE_CHECKPOINT_PICKLE_READER_H_
#define PRIMAPS_ENGINE_CHECKPOINT_PICKLE_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/checkpoint/tensor_record.h"

namespace primaps {

struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kBytes,
    kList,
    kTuple,
    kDict,  // items: key0, value0, key1, value1, ...
    kSet,
    kGlobal,   // text: "module.name" of an allow-listed global
    kStorage,  // text: storage key inside the archive; dtype; int_value: numel
    kTensor,   // items[0]: the storage; offset, size, stride
    kObject,   // text: class name; items: state (from BUILD), if any
  };
  Kind kind = Kind::kNone;
  int64_t int_value = 0;
  double float_value = 0;
  std::string text;
  std::vector<int32_t> items;
  DType dtype = DType::kU8;
  int64_t offset = 0;
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

struct PickleGraph {
  std::vector<PickleValue> values;
  int32_t root = -1;

  const PickleValue& at(int32_t index) const { return values[index]; }
  // For a dict value: the value under string key `key`, or -1.
  int32_t Find(int32_t dict, absl::string_view key) const;
};

// Parses a binary pickle (protocols 2 to 5).
absl::StatusOr<PickleGraph> ParsePickle(absl::string_view bytes);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CHECKPOINT_PICKLE_READER_H_
