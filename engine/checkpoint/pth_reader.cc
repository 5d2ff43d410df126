#include "engine/checkpoint/pth_reader.h"

#include <cstring>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/checkpoint/pickle_reader.h"
#include "engine/checkpoint/zip_reader.h"

namespace primaps {
namespace {

using Kind = PickleValue::Kind;

// Copies the (possibly strided) view a tensor makes of its storage.
absl::StatusOr<TensorRecord> Materialize(const std::string& name,
                                         const PickleValue& tensor,
                                         const std::string& storage) {
  TensorRecord record;
  record.dtype = tensor.dtype;
  record.shape = tensor.size;
  const size_t elem = DTypeSize(tensor.dtype);
  ASSIGN_OR_RETURN(const int64_t numel, CheckedNumElements(tensor.size));
  const int64_t storage_numel = static_cast<int64_t>(storage.size() / elem);
  // The largest element index the view touches must lie in the storage.
  int64_t last = tensor.offset;
  for (size_t d = 0; d < tensor.size.size(); ++d) {
    if (tensor.stride[d] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\" has a negative stride"));
    }
    if (tensor.size[d] > 0) last += (tensor.size[d] - 1) * tensor.stride[d];
  }
  if (tensor.offset < 0 || (numel > 0 && last >= storage_numel)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" of shape ", ShapeString(tensor.size),
        " at offset ", tensor.offset, " reaches past its storage of ",
        storage_numel, " elements"));
  }
  record.data.resize(static_cast<size_t>(numel) * elem);
  const size_t rank = tensor.size.size();
  std::vector<int64_t> index(rank, 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t src = tensor.offset;
    for (size_t d = 0; d < rank; ++d) src += index[d] * tensor.stride[d];
    std::memcpy(&record.data[i * elem], &storage[src * elem], elem);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < tensor.size[d]) break;
      index[d] = 0;
    }
  }
  return record;
}

// A scalar pickle value as text; false for anything else.
bool ScalarText(const PickleGraph& graph, const PickleValue& v,
                std::string* out) {
  switch (v.kind) {
    case Kind::kNone:
      *out = "None";
      return true;
    case Kind::kBool:
      *out = v.int_value ? "True" : "False";
      return true;
    case Kind::kInt:
      *out = absl::StrCat(v.int_value);
      return true;
    case Kind::kFloat:
      *out = absl::StrCat(v.float_value);
      return true;
    case Kind::kString:
      *out = v.text;
      return true;
    case Kind::kList:
    case Kind::kTuple: {
      std::string joined;
      for (int32_t item : v.items) {
        std::string text;
        if (!ScalarText(graph, graph.at(item), &text)) return false;
        absl::StrAppend(&joined, joined.empty() ? "" : ",", text);
      }
      *out = joined;
      return true;
    }
    default:
      return false;
  }
}

// The scalar entries of a dict value (kDict, or a kObject whose state is
// one), as text.
std::map<std::string, std::string> ScalarFields(const PickleGraph& graph,
                                                int32_t index) {
  std::map<std::string, std::string> out;
  const PickleValue* v = &graph.at(index);
  if (v->kind == Kind::kObject) {
    if (v->items.empty()) return out;
    v = &graph.at(v->items[0]);
  }
  if (v->kind != Kind::kDict) return out;
  for (size_t i = 0; i + 1 < v->items.size(); i += 2) {
    const PickleValue& key = graph.at(v->items[i]);
    std::string text;
    if (key.kind == Kind::kString &&
        ScalarText(graph, graph.at(v->items[i + 1]), &text)) {
      out[key.text] = text;
    }
  }
  return out;
}

// The state dict BUILD gave an inert object, or -1.
int32_t ObjectState(const PickleGraph& graph, int32_t index) {
  const PickleValue& v = graph.at(index);
  if (v.kind != Kind::kObject || v.items.empty()) return -1;
  const int32_t state = v.items[0];
  return graph.at(state).kind == Kind::kDict ? state : -1;
}

// The scalar leaves of an OmegaConf DictConfig (its "_content", each node's
// "_val"), as "prefix.key", nested configs as "prefix.key.subkey".
void AddOmegaConfFields(const PickleGraph& graph, int32_t config,
                        const std::string& prefix,
                        std::map<std::string, std::string>* out) {
  const int32_t state = ObjectState(graph, config);
  const int32_t content = state >= 0 ? graph.Find(state, "_content") : -1;
  if (content < 0 || graph.at(content).kind != Kind::kDict) return;
  const PickleValue& d = graph.at(content);
  for (size_t i = 0; i + 1 < d.items.size(); i += 2) {
    const PickleValue& key = graph.at(d.items[i]);
    if (key.kind != Kind::kString) continue;
    const std::string name = absl::StrCat(prefix, ".", key.text);
    const int32_t node = d.items[i + 1];
    if (graph.at(node).kind == Kind::kObject &&
        graph.at(node).text == "omegaconf.dictconfig.DictConfig") {
      AddOmegaConfFields(graph, node, name, out);
      continue;
    }
    const int32_t node_state = ObjectState(graph, node);
    const int32_t value = node_state >= 0 ? graph.Find(node_state, "_val") : -1;
    std::string text;
    if (value >= 0 && ScalarText(graph, graph.at(value), &text))
      (*out)[name] = text;
  }
}

}  // namespace

absl::StatusOr<PthStateDict> ReadPthStateDict(absl::string_view bytes) {
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == 0x80) {
    return absl::InvalidArgumentError(
        "this is the legacy (pre-1.6) torch.save format; re-save it with a "
        "current "
        "PyTorch (torch.save(torch.load(f), f)) to get the zip format");
  }
  auto zip_or = ZipReader::Open(bytes);
  if (!zip_or.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a torch.save checkpoint: ", zip_or.status().message()));
  }
  const ZipReader& zip = **zip_or;
  std::string prefix;
  for (const std::string& entry : zip.EntryNames()) {
    const size_t slash = entry.find('/');
    if (slash != std::string::npos && entry.substr(slash) == "/data.pkl") {
      prefix = entry.substr(0, slash + 1);
      break;
    }
  }
  if (prefix.empty()) {
    return absl::InvalidArgumentError(
        "not a torch.save checkpoint: no <name>/data.pkl entry");
  }
  ASSIGN_OR_RETURN(const std::string pickle, zip.Read(prefix + "data.pkl"));
  ASSIGN_OR_RETURN(const PickleGraph graph, ParsePickle(pickle));

  PthStateDict result;
  int32_t dict = graph.root;
  if (graph.at(dict).kind != Kind::kDict) {
    return absl::InvalidArgumentError(
        "checkpoint does not hold a dict (state dict) at the top level");
  }
  const PickleValue& top = graph.at(graph.root);
  for (size_t i = 0; i < top.items.size(); i += 2) {
    if (graph.at(top.items[i]).kind == Kind::kString)
      result.top_level_keys.push_back(graph.at(top.items[i]).text);
  }
  if (const int32_t hparams = graph.Find(graph.root, "hyper_parameters");
      hparams >= 0) {
    const int32_t opts = graph.Find(hparams, "opts");
    result.hyper_parameters = ScalarFields(graph, opts >= 0 ? opts : hparams);
    // STEGO's checkpoints keep their config as an OmegaConf DictConfig.
    const PickleValue& h = graph.at(hparams);
    for (size_t i = 0; h.kind == Kind::kDict && i + 1 < h.items.size();
         i += 2) {
      const PickleValue& key = graph.at(h.items[i]);
      const PickleValue& value = graph.at(h.items[i + 1]);
      if (key.kind == Kind::kString && value.kind == Kind::kObject &&
          value.text == "omegaconf.dictconfig.DictConfig") {
        AddOmegaConfFields(graph, h.items[i + 1], key.text,
                           &result.hyper_parameters);
      }
    }
  }
  // Which dicts hold the tensors, and the prefix their keys get.
  std::vector<std::pair<int32_t, std::string>> dicts;
  if (const int32_t net = graph.Find(graph.root, "net_model_state_dict");
      net >= 0 && graph.at(net).kind == Kind::kDict) {
    // HP's save_checkpoint: the featurizer, the cluster probe and the
    // linear probe in dicts of their own, named here as STEGO's Lightning
    // state dict names them.
    result.source = "hp";
    dicts.push_back({net, "net."});
    for (const auto& [key, name] :
         {std::pair<const char*, const char*>{"cluster_model_state_dict",
                                              "cluster_probe."},
          {"linear_model_state_dict", "linear_probe."}}) {
      const int32_t nested = graph.Find(graph.root, key);
      if (nested >= 0 && graph.at(nested).kind == Kind::kDict)
        dicts.push_back({nested, name});
    }
  } else {
    for (const char* key : {"teacher", "model", "state_dict"}) {
      const int32_t nested = graph.Find(graph.root, key);
      if (nested >= 0 && graph.at(nested).kind == Kind::kDict) {
        dict = nested;
        result.source = key;
        break;
      }
    }
    dicts.push_back({dict, ""});
  }
  std::map<std::string, std::string> storages;  // key -> bytes, read once
  for (const auto& [index, name_prefix] : dicts) {
    const PickleValue& d = graph.at(index);
    for (size_t i = 0; i + 1 < d.items.size(); i += 2) {
      const PickleValue& key = graph.at(d.items[i]);
      const PickleValue& value = graph.at(d.items[i + 1]);
      if (key.kind != Kind::kString) {
        return absl::InvalidArgumentError(
            "state dict has a key that is not a string");
      }
      // DataParallel's "module." prefix (HP saves wrapped models).
      const std::string name =
          absl::StrCat(name_prefix, absl::StartsWith(key.text, "module.")
                                        ? key.text.substr(7)
                                        : key.text);
      if (value.kind != Kind::kTensor) {
        return absl::InvalidArgumentError(
            absl::StrCat("state dict entry \"", name, "\" is not a tensor"));
      }
      const PickleValue& storage = graph.at(value.items[0]);
      auto it = storages.find(storage.text);
      if (it == storages.end()) {
        auto data = zip.Read(prefix + "data/" + storage.text);
        if (!data.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "storage of \"", name, "\": ", data.status().message()));
        }
        it = storages.emplace(storage.text, *std::move(data)).first;
      }
      ASSIGN_OR_RETURN(result.tensors[name],
                       Materialize(name, value, it->second));
    }
  }
  return result;
}

}  // namespace primaps
