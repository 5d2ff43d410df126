#include "engine/checkpoint/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace primaps {
namespace {

using nlohmann::json;

// Header size limit from the safetensors specification.
constexpr uint64_t kMaxHeaderBytes = 100 * 1000 * 1000;

absl::Status Invalid(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors tensor \"", name, "\": ", what));
}

absl::StatusOr<TensorRecord> ParseEntry(const std::string& name,
                                        const json& entry,
                                        absl::string_view data) {
  if (!entry.is_object()) return Invalid(name, "header entry is not an object");
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return Invalid(name, "missing dtype");
  }
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return Invalid(name, "missing shape");
  }
  if (offsets_it == entry.end() || !offsets_it->is_array() ||
      offsets_it->size() != 2 || !(*offsets_it)[0].is_number_unsigned() ||
      !(*offsets_it)[1].is_number_unsigned()) {
    return Invalid(name, "data_offsets must be two non-negative integers");
  }
  TensorRecord record;
  auto dtype = DTypeFromName(dtype_it->get<std::string>());
  if (!dtype.ok()) return Invalid(name, dtype.status().message());
  record.dtype = *dtype;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned())
      return Invalid(name, "shape has a non-integer or negative entry");
    record.shape.push_back(d.get<int64_t>());
  }
  if (record.shape.size() > 8) return Invalid(name, "more than 8 dimensions");
  auto numel = CheckedNumElements(record.shape);
  if (!numel.ok()) return Invalid(name, numel.status().message());
  const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  const uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (begin > end || end > data.size()) {
    return Invalid(
        name, absl::StrCat("data_offsets [", begin, ", ", end, "] outside the ",
                           data.size(), " data bytes"));
  }
  const uint64_t expected =
      static_cast<uint64_t>(*numel) * DTypeSize(record.dtype);
  if (end - begin != expected) {
    return Invalid(name,
                   absl::StrCat("shape ", ShapeString(record.shape), " of ",
                                DTypeName(record.dtype), " needs ", expected,
                                " bytes, data_offsets give ", end - begin));
  }
  record.data.assign(data.data() + begin, end - begin);
  return record;
}

}  // namespace

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file is ", bytes.size(),
                     " bytes, too short for a header"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = header_len << 8 | static_cast<uint8_t>(bytes[i]);
  }
  if (header_len > kMaxHeaderBytes || header_len > bytes.size() - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors header length ", header_len,
                     " exceeds the file (", bytes.size(),
                     " bytes) or the 100 MB limit; the file is truncated or "
                     "not safetensors"));
  }
  const absl::string_view header_text = bytes.substr(8, header_len);
  const absl::string_view data = bytes.substr(8 + header_len);
  const json header = json::parse(header_text.begin(), header_text.end(),
                                  /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::InvalidArgumentError(
        "safetensors header is not a JSON object");
  }
  SafetensorsFile file;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return absl::InvalidArgumentError(
            "safetensors __metadata__ is not an object");
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "safetensors __metadata__ value \"", key, "\" is not a string"));
        }
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(file.tensors[name], ParseEntry(name, entry, data));
  }
  return file;
}

std::string SerializeSafetensors(const SafetensorsFile& file) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, record] : file.tensors) {
    header[name] = {{"dtype", DTypeName(record.dtype)},
                    {"shape", record.shape},
                    {"data_offsets", {offset, offset + record.data.size()}}};
    offset += record.data.size();
  }
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::string text = header.dump();
  // Pad with spaces so the data starts 8-byte aligned, as the reference
  // writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(text.size() >> (8 * i)));
  out += text;
  for (const auto& [name, record] : file.tensors) out += record.data;
  return out;
}

}  // namespace primaps
