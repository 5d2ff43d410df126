#include "engine/checkpoint/pickle_reader.h"

#include <cstring>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace primaps {
namespace {

using Kind = PickleValue::Kind;

// Storage classes torch.save names in persistent ids, and their dtypes.
struct StorageClass {
  const char* name;
  DType dtype;
};
constexpr StorageClass kStorageClasses[] = {
    {"torch.FloatStorage", DType::kF32},
    {"torch.HalfStorage", DType::kF16},
    {"torch.BFloat16Storage", DType::kBF16},
    {"torch.DoubleStorage", DType::kF64},
    {"torch.LongStorage", DType::kI64},
    {"torch.IntStorage", DType::kI32},
    {"torch.ShortStorage", DType::kI16},
    {"torch.CharStorage", DType::kI8},
    {"torch.ByteStorage", DType::kU8},
    {"torch.BoolStorage", DType::kBool},
    {"torch.UntypedStorage", DType::kU8},
};

// Callables whose results we build as data, never by calling anything.
constexpr const char* kCallables[] = {
    "collections.OrderedDict",
    // An empty dict (its default factory is dropped).
    "collections.defaultdict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
};

// Classes whose instances become inert objects holding the state BUILD
// gives them: DINO training checkpoints store their command line as a
// Namespace, train.py its options; STEGO's Lightning checkpoints an
// OmegaConf config, whose nodes and metadata are plain dataclasses.
constexpr const char* kInertClasses[] = {
    "argparse.Namespace",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
};

// Globals that may appear as values (OmegaConf's type annotations), never
// called.
constexpr const char* kTypeValues[] = {
    "typing.Any",    "__builtin__.dict", "builtins.dict", "__builtin__.list",
    "builtins.list", "builtins.object",  "builtins.int",  "builtins.float",
    "builtins.str",  "builtins.bool",
};

bool IsInertClass(const std::string& name) {
  for (const char* c : kInertClasses) {
    if (name == c) return true;
  }
  return false;
}

bool IsAllowedGlobal(const std::string& name) {
  for (const auto& s : kStorageClasses) {
    if (name == s.name) return true;
  }
  for (const char* c : kCallables) {
    if (name == c) return true;
  }
  for (const char* c : kTypeValues) {
    if (name == c) return true;
  }
  return IsInertClass(name);
}

class Unpickler {
 public:
  explicit Unpickler(absl::string_view bytes) : in_(bytes) {}

  absl::StatusOr<PickleGraph> Run() {
    while (true) {
      if (pos_ >= in_.size()) return Error("ends without a STOP opcode");
      const uint8_t op = static_cast<uint8_t>(in_[pos_++]);
      if (op == '.') break;
      RETURN_IF_ERROR(Step(op));
    }
    if (stack_.size() != 1)
      return Error("STOP with a stack that is not one value");
    graph_.root = stack_.back();
    return std::move(graph_);
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("pickle at byte ", pos_, ": ", what));
  }

  absl::Status Read(size_t n, absl::string_view* out) {
    if (n > in_.size() - pos_) return Error("truncated");
    *out = in_.substr(pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status ReadUint(int n, uint64_t* out) {
    absl::string_view s;
    RETURN_IF_ERROR(Read(n, &s));
    *out = 0;
    for (int i = n - 1; i >= 0; --i)
      *out = *out << 8 | static_cast<uint8_t>(s[i]);
    return absl::OkStatus();
  }
  absl::Status ReadLine(std::string* out) {
    const size_t end = in_.find('\n', pos_);
    if (end == absl::string_view::npos) return Error("unterminated GLOBAL");
    *out = std::string(in_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return absl::OkStatus();
  }

  int32_t New(Kind kind) {
    graph_.values.emplace_back();
    graph_.values.back().kind = kind;
    return static_cast<int32_t>(graph_.values.size() - 1);
  }
  PickleValue& V(int32_t i) { return graph_.values[i]; }

  absl::Status Pop(int32_t* out) {
    if (stack_.size() <= MarkBase()) return Error("stack underflow");
    *out = stack_.back();
    stack_.pop_back();
    return absl::OkStatus();
  }
  absl::Status Top(int32_t* out) {
    if (stack_.size() <= MarkBase()) return Error("stack underflow");
    *out = stack_.back();
    return absl::OkStatus();
  }
  size_t MarkBase() const { return marks_.empty() ? 0 : marks_.back(); }
  // Pops everything above the newest MARK, and the MARK.
  absl::Status PopMark(std::vector<int32_t>* items) {
    if (marks_.empty()) return Error("no MARK");
    const size_t base = marks_.back();
    marks_.pop_back();
    items->assign(stack_.begin() + base, stack_.end());
    stack_.resize(base);
    return absl::OkStatus();
  }

  absl::Status PushString(Kind kind, int len_bytes) {
    uint64_t n;
    RETURN_IF_ERROR(ReadUint(len_bytes, &n));
    absl::string_view s;
    RETURN_IF_ERROR(Read(n, &s));
    const int32_t v = New(kind);
    V(v).text = std::string(s);
    stack_.push_back(v);
    return absl::OkStatus();
  }

  absl::Status PushInt(int64_t value) {
    const int32_t v = New(Kind::kInt);
    V(v).int_value = value;
    stack_.push_back(v);
    return absl::OkStatus();
  }

  absl::Status PushLong(int len_bytes) {
    uint64_t n;
    RETURN_IF_ERROR(ReadUint(len_bytes, &n));
    if (n > 8) return Error("integer wider than 64 bits");
    absl::string_view s;
    RETURN_IF_ERROR(Read(n, &s));
    uint64_t u = 0;
    for (int i = static_cast<int>(n) - 1; i >= 0; --i)
      u = u << 8 | static_cast<uint8_t>(s[i]);
    // Two's complement of n bytes, sign-extended.
    if (n > 0 && n < 8 && (static_cast<uint8_t>(s[n - 1]) & 0x80))
      u |= ~uint64_t{0} << (8 * n);
    return PushInt(static_cast<int64_t>(u));
  }

  absl::Status PushGlobal(const std::string& module, const std::string& name) {
    const std::string full = absl::StrCat(module, ".", name);
    if (!IsAllowedGlobal(full)) {
      return Error(absl::StrCat(
          "disallowed global \"", full,
          "\" (a checkpoint may only hold tensors and plain data)"));
    }
    const int32_t v = New(Kind::kGlobal);
    V(v).text = full;
    stack_.push_back(v);
    return absl::OkStatus();
  }

  absl::Status Memoize(uint64_t key) {
    int32_t top;
    RETURN_IF_ERROR(Top(&top));
    memo_[key] = top;
    return absl::OkStatus();
  }
  absl::Status Recall(uint64_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end())
      return Error(absl::StrCat("memo key ", key, " not set"));
    stack_.push_back(it->second);
    return absl::OkStatus();
  }

  absl::Status MakeSequence(Kind kind, std::vector<int32_t> items) {
    const int32_t v = New(kind);
    V(v).items = std::move(items);
    stack_.push_back(v);
    return absl::OkStatus();
  }

  absl::Status AppendTo(int32_t target, const std::vector<int32_t>& items,
                        Kind want) {
    if (V(target).kind != want)
      return Error("append to a value of the wrong kind");
    if (want == Kind::kDict && items.size() % 2 != 0)
      return Error("odd SETITEMS");
    V(target).items.insert(V(target).items.end(), items.begin(), items.end());
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> IntAt(int32_t v, absl::string_view what) {
    if (V(v).kind != Kind::kInt && V(v).kind != Kind::kBool) {
      return Error(absl::StrCat(what, " is not an integer"));
    }
    return V(v).int_value;
  }

  absl::StatusOr<std::vector<int64_t>> IntTuple(int32_t v,
                                                absl::string_view what) {
    if (V(v).kind != Kind::kTuple)
      return Error(absl::StrCat(what, " is not a tuple"));
    std::vector<int64_t> out;
    for (int32_t item : V(v).items) {
      ASSIGN_OR_RETURN(const int64_t x, IntAt(item, what));
      out.push_back(x);
    }
    return out;
  }

  // Builds what calling `callable` with `args` would return, as data.
  absl::Status Reduce(int32_t callable, int32_t args) {
    if (V(callable).kind != Kind::kGlobal)
      return Error("REDUCE of a non-global");
    if (V(args).kind != Kind::kTuple)
      return Error("REDUCE arguments are not a tuple");
    const std::string name = V(callable).text;  // copy: New() may reallocate
    const std::vector<int32_t> a = V(args).items;
    if (name == "collections.OrderedDict") {
      if (!a.empty()) return Error("OrderedDict with constructor arguments");
      return MakeSequence(Kind::kDict, {});
    }
    if (name == "collections.defaultdict") return MakeSequence(Kind::kDict, {});
    if (IsInertClass(name)) {
      const int32_t v = New(Kind::kObject);
      V(v).text = name;
      stack_.push_back(v);
      return absl::OkStatus();
    }
    if (name == "torch._utils._rebuild_parameter") {
      if (a.empty() || V(a[0]).kind != Kind::kTensor) {
        return Error("_rebuild_parameter without a tensor");
      }
      stack_.push_back(a[0]);
      return absl::OkStatus();
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      if (a.size() < 4 || V(a[0]).kind != Kind::kStorage) {
        return Error(
            "_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
      }
      const int32_t v = New(Kind::kTensor);
      ASSIGN_OR_RETURN(V(v).offset, IntAt(a[1], "tensor storage offset"));
      ASSIGN_OR_RETURN(V(v).size, IntTuple(a[2], "tensor size"));
      ASSIGN_OR_RETURN(V(v).stride, IntTuple(a[3], "tensor stride"));
      if (V(v).size.size() != V(v).stride.size())
        return Error("tensor size and stride differ in rank");
      V(v).items = {a[0]};
      V(v).dtype = V(a[0]).dtype;
      stack_.push_back(v);
      return absl::OkStatus();
    }
    return Error(absl::StrCat("\"", name, "\" cannot be called"));
  }

  // persistent_load(('storage', StorageClass, key, location, numel)).
  absl::Status PersistentLoad(int32_t pid) {
    const PickleValue t = V(pid);  // copy: New() below may reallocate
    if (t.kind != Kind::kTuple || t.items.size() < 5 ||
        V(t.items[0]).kind != Kind::kString ||
        V(t.items[0]).text != "storage" ||
        V(t.items[1]).kind != Kind::kGlobal ||
        V(t.items[2]).kind != Kind::kString) {
      return Error(
          "persistent id is not ('storage', class, key, location, numel)");
    }
    DType dtype = DType::kU8;
    bool known = false;
    for (const auto& s : kStorageClasses) {
      if (V(t.items[1]).text == s.name) {
        dtype = s.dtype;
        known = true;
      }
    }
    if (!known)
      return Error(
          absl::StrCat("\"", V(t.items[1]).text, "\" is not a storage class"));
    ASSIGN_OR_RETURN(const int64_t numel, IntAt(t.items[4], "storage numel"));
    const int32_t v = New(Kind::kStorage);
    V(v).dtype = dtype;
    V(v).text = graph_.values[t.items[2]].text;
    V(v).int_value = numel;
    stack_.push_back(v);
    return absl::OkStatus();
  }

  absl::Status Step(uint8_t op) {
    uint64_t n;
    int32_t a, b, c;
    std::vector<int32_t> items;
    switch (op) {
      case 0x80:  // PROTO
        RETURN_IF_ERROR(ReadUint(1, &n));
        if (n < 2 || n > 5)
          return Error(
              absl::StrCat("pickle protocol ", n, " is not supported"));
        return absl::OkStatus();
      case 0x95:  // FRAME: a length hint only.
        return ReadUint(8, &n);
      case '}':
        return MakeSequence(Kind::kDict, {});
      case ']':
        return MakeSequence(Kind::kList, {});
      case ')':
        return MakeSequence(Kind::kTuple, {});
      case 0x8f:  // EMPTY_SET
        return MakeSequence(Kind::kSet, {});
      case '(':
        marks_.push_back(stack_.size());
        return absl::OkStatus();
      case 'X':
        return PushString(Kind::kString, 4);
      case 0x8c:
        return PushString(Kind::kString, 1);
      case 0x8d:
        return PushString(Kind::kString, 8);
      case 'T':
        return PushString(Kind::kString, 4);
      case 'U':
        return PushString(Kind::kString, 1);
      case 'B':
        return PushString(Kind::kBytes, 4);
      case 'C':
        return PushString(Kind::kBytes, 1);
      case 0x8e:
        return PushString(Kind::kBytes, 8);
      case 'q':
        RETURN_IF_ERROR(ReadUint(1, &n));
        return Memoize(n);
      case 'r':
        RETURN_IF_ERROR(ReadUint(4, &n));
        return Memoize(n);
      case 0x94:  // MEMOIZE
        return Memoize(memo_.size());
      case 'h':
        RETURN_IF_ERROR(ReadUint(1, &n));
        return Recall(n);
      case 'j':
        RETURN_IF_ERROR(ReadUint(4, &n));
        return Recall(n);
      case 'c': {
        std::string module, name;
        RETURN_IF_ERROR(ReadLine(&module));
        RETURN_IF_ERROR(ReadLine(&name));
        return PushGlobal(module, name);
      }
      case 0x93:  // STACK_GLOBAL
        RETURN_IF_ERROR(Pop(&b));
        RETURN_IF_ERROR(Pop(&a));
        if (V(a).kind != Kind::kString || V(b).kind != Kind::kString) {
          return Error("STACK_GLOBAL of non-strings");
        }
        return PushGlobal(V(a).text, V(b).text);
      case 'J':
        RETURN_IF_ERROR(ReadUint(4, &n));
        return PushInt(static_cast<int32_t>(static_cast<uint32_t>(n)));
      case 'K':
        RETURN_IF_ERROR(ReadUint(1, &n));
        return PushInt(static_cast<int64_t>(n));
      case 'M':
        RETURN_IF_ERROR(ReadUint(2, &n));
        return PushInt(static_cast<int64_t>(n));
      case 0x8a:
        return PushLong(1);
      case 0x8b:
        return PushLong(4);
      case 'G': {
        RETURN_IF_ERROR(ReadUint(8, &n));
        // BINFLOAT is big-endian: ReadUint read it little-endian, so swap.
        uint64_t swapped = 0;
        for (int i = 0; i < 8; ++i)
          swapped = swapped << 8 | ((n >> (8 * i)) & 0xFF);
        const int32_t v = New(Kind::kFloat);
        std::memcpy(&V(v).float_value, &swapped, 8);
        stack_.push_back(v);
        return absl::OkStatus();
      }
      case 0x88:
      case 0x89: {
        const int32_t v = New(Kind::kBool);
        V(v).int_value = op == 0x88;
        stack_.push_back(v);
        return absl::OkStatus();
      }
      case 'N':
        stack_.push_back(New(Kind::kNone));
        return absl::OkStatus();
      case 't':
        RETURN_IF_ERROR(PopMark(&items));
        return MakeSequence(Kind::kTuple, std::move(items));
      case 0x85:
      case 0x86:
      case 0x87:
        items.resize(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) RETURN_IF_ERROR(Pop(&items[i]));
        return MakeSequence(Kind::kTuple, std::move(items));
      case 'l':
        RETURN_IF_ERROR(PopMark(&items));
        return MakeSequence(Kind::kList, std::move(items));
      case 'd':
        RETURN_IF_ERROR(PopMark(&items));
        if (items.size() % 2 != 0) return Error("odd DICT");
        return MakeSequence(Kind::kDict, std::move(items));
      case 0x91:  // FROZENSET
        RETURN_IF_ERROR(PopMark(&items));
        return MakeSequence(Kind::kSet, std::move(items));
      case 'a':
        RETURN_IF_ERROR(Pop(&b));
        RETURN_IF_ERROR(Top(&a));
        return AppendTo(a, {b}, Kind::kList);
      case 'e':
        RETURN_IF_ERROR(PopMark(&items));
        RETURN_IF_ERROR(Top(&a));
        return AppendTo(a, items, Kind::kList);
      case 's':
        RETURN_IF_ERROR(Pop(&c));
        RETURN_IF_ERROR(Pop(&b));
        RETURN_IF_ERROR(Top(&a));
        return AppendTo(a, {b, c}, Kind::kDict);
      case 'u':
        RETURN_IF_ERROR(PopMark(&items));
        RETURN_IF_ERROR(Top(&a));
        return AppendTo(a, items, Kind::kDict);
      case 0x90:  // ADDITEMS
        RETURN_IF_ERROR(PopMark(&items));
        RETURN_IF_ERROR(Top(&a));
        return AppendTo(a, items, Kind::kSet);
      case 'R':
        RETURN_IF_ERROR(Pop(&b));
        RETURN_IF_ERROR(Pop(&a));
        return Reduce(a, b);
      case 0x81:  // NEWOBJ: cls.__new__(cls, *args), same as a call here.
        RETURN_IF_ERROR(Pop(&b));
        RETURN_IF_ERROR(Pop(&a));
        return Reduce(a, b);
      case 'b':  // BUILD: set state. Kept for objects; an OrderedDict's
                 // state (its _metadata attribute) is not needed.
        RETURN_IF_ERROR(Pop(&b));
        RETURN_IF_ERROR(Top(&a));
        if (V(a).kind == Kind::kObject) {
          V(a).items = {b};
        } else if (V(a).kind != Kind::kDict && V(a).kind != Kind::kTensor) {
          return Error("BUILD on a value that takes no state");
        }
        return absl::OkStatus();
      case 'Q':
        RETURN_IF_ERROR(Pop(&a));
        return PersistentLoad(a);
      case '0':
        return Pop(&a);
      case '1':
        return PopMark(&items);
      case '2':
        RETURN_IF_ERROR(Top(&a));
        stack_.push_back(a);
        return absl::OkStatus();
      default:
        return Error(absl::StrCat("unsupported opcode 0x", absl::Hex(op)));
    }
  }

  absl::string_view in_;
  size_t pos_ = 0;
  PickleGraph graph_;
  std::vector<int32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, int32_t> memo_;
};

}  // namespace

int32_t PickleGraph::Find(int32_t dict, absl::string_view key) const {
  const PickleValue& d = values[dict];
  if (d.kind != PickleValue::Kind::kDict) return -1;
  for (size_t i = 0; i + 1 < d.items.size(); i += 2) {
    const PickleValue& k = values[d.items[i]];
    if (k.kind == PickleValue::Kind::kString && k.text == key)
      return d.items[i + 1];
  }
  return -1;
}

absl::StatusOr<PickleGraph> ParsePickle(absl::string_view bytes) {
  return Unpickler(bytes).Run();
}

}  // namespace primaps
