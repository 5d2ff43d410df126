#include "engine/checkpoint/zip_reader.h"

#include <zlib.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace primaps {
namespace {

constexpr uint32_t kEndOfCentralDir = 0x06054b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint32_t kZip64EndOfCentralDir = 0x06064b50;
constexpr uint32_t kCentralDirEntry = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
// Largest entry we inflate or copy; far above any backbone checkpoint.
constexpr uint64_t kMaxEntryBytes = uint64_t{1} << 34;

uint64_t LoadLe(absl::string_view bytes, size_t offset, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i)
    v = v << 8 | static_cast<uint8_t>(bytes[offset + i]);
  return v;
}

bool Has(absl::string_view bytes, uint64_t offset, uint64_t n) {
  return offset <= bytes.size() && n <= bytes.size() - offset;
}

absl::Status Corrupt(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("zip archive is truncated or corrupt: ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZipReader>> ZipReader::Open(
    absl::string_view bytes) {
  std::unique_ptr<ZipReader> reader(new ZipReader(bytes));
  RETURN_IF_ERROR(reader->ParseCentralDirectory());
  return reader;
}

absl::Status ZipReader::ParseCentralDirectory() {
  const absl::string_view b = bytes_;
  if (b.size() < 22) return Corrupt(absl::StrCat("only ", b.size(), " bytes"));
  // The end-of-central-directory record sits in the last 22 + 65535 bytes
  // (its comment is at most 65535 bytes). Search backwards for it.
  size_t eocd = std::string::npos;
  const size_t lowest = b.size() > 22 + 65535 ? b.size() - 22 - 65535 : 0;
  for (size_t pos = b.size() - 22 + 1; pos-- > lowest;) {
    if (LoadLe(b, pos, 4) == kEndOfCentralDir) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::string::npos)
    return Corrupt("no end-of-central-directory record");
  uint64_t count = LoadLe(b, eocd + 10, 2);
  uint64_t cd_size = LoadLe(b, eocd + 12, 4);
  uint64_t cd_offset = LoadLe(b, eocd + 16, 4);
  if (eocd >= 20 && LoadLe(b, eocd - 20, 4) == kZip64Locator) {
    const uint64_t z64 = LoadLe(b, eocd - 20 + 8, 8);
    if (!Has(b, z64, 56) || LoadLe(b, z64, 4) != kZip64EndOfCentralDir) {
      return Corrupt("bad ZIP64 end-of-central-directory record");
    }
    count = LoadLe(b, z64 + 32, 8);
    cd_size = LoadLe(b, z64 + 40, 8);
    cd_offset = LoadLe(b, z64 + 48, 8);
  }
  if (!Has(b, cd_offset, cd_size))
    return Corrupt("central directory outside the file");
  uint64_t pos = cd_offset;
  for (uint64_t i = 0; i < count; ++i) {
    if (!Has(b, pos, 46) || LoadLe(b, pos, 4) != kCentralDirEntry) {
      return Corrupt(absl::StrCat("central directory entry ", i));
    }
    Entry entry;
    entry.method = static_cast<uint16_t>(LoadLe(b, pos + 10, 2));
    entry.crc32 = static_cast<uint32_t>(LoadLe(b, pos + 16, 4));
    entry.compressed_size = LoadLe(b, pos + 20, 4);
    entry.uncompressed_size = LoadLe(b, pos + 24, 4);
    const uint64_t name_len = LoadLe(b, pos + 28, 2);
    const uint64_t extra_len = LoadLe(b, pos + 30, 2);
    const uint64_t comment_len = LoadLe(b, pos + 32, 2);
    entry.local_header_offset = LoadLe(b, pos + 42, 4);
    if (!Has(b, pos + 46, name_len + extra_len + comment_len)) {
      return Corrupt(absl::StrCat("central directory entry ", i, " name"));
    }
    std::string name(b.substr(pos + 46, name_len));
    // ZIP64 extended information: the 64-bit values appear, in this order,
    // only for the fields whose 32-bit value is 0xFFFFFFFF.
    uint64_t extra = pos + 46 + name_len;
    const uint64_t extra_end = extra + extra_len;
    while (extra + 4 <= extra_end) {
      const uint64_t id = LoadLe(b, extra, 2);
      const uint64_t size = LoadLe(b, extra + 2, 2);
      if (extra + 4 + size > extra_end) return Corrupt("extra field");
      if (id == 0x0001) {
        uint64_t field = extra + 4;
        for (uint64_t* value :
             {&entry.uncompressed_size, &entry.compressed_size,
              &entry.local_header_offset}) {
          if (*value != 0xFFFFFFFFu) continue;
          if (field + 8 > extra + 4 + size) return Corrupt("ZIP64 extra field");
          *value = LoadLe(b, field, 8);
          field += 8;
        }
      }
      extra += 4 + size;
    }
    entries_[name] = entry;
    pos += 46 + name_len + extra_len + comment_len;
  }
  return absl::OkStatus();
}

std::vector<std::string> ZipReader::EntryNames() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

absl::StatusOr<std::string> ZipReader::Read(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat("zip archive has no entry \"", name, "\""));
  }
  const Entry& e = it->second;
  const absl::string_view b = bytes_;
  const uint64_t local = e.local_header_offset;
  if (!Has(b, local, 30) || LoadLe(b, local, 4) != kLocalHeader) {
    return Corrupt(absl::StrCat("local header of \"", name, "\""));
  }
  const uint64_t data =
      local + 30 + LoadLe(b, local + 26, 2) + LoadLe(b, local + 28, 2);
  if (!Has(b, data, e.compressed_size)) {
    return Corrupt(
        absl::StrCat("data of \"", name, "\" runs past the end of the file"));
  }
  if (e.uncompressed_size > kMaxEntryBytes) {
    return Corrupt(absl::StrCat("entry \"", name, "\" claims ",
                                e.uncompressed_size, " bytes"));
  }
  std::string out;
  if (e.method == 0) {
    if (e.compressed_size != e.uncompressed_size) {
      return Corrupt(absl::StrCat("stored entry \"", name, "\" has two sizes"));
    }
    out.assign(b.data() + data, e.compressed_size);
  } else if (e.method == 8) {
    out.resize(e.uncompressed_size);
    z_stream stream{};
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK)
      return absl::InternalError("inflateInit2");
    // zlib's avail_in/avail_out are 32-bit; feed and drain in chunks.
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      stream.next_in = reinterpret_cast<Bytef*>(
          const_cast<char*>(b.data() + data + in_done));
      stream.avail_in = static_cast<uInt>(
          std::min<uint64_t>(e.compressed_size - in_done, 1u << 30));
      stream.next_out = reinterpret_cast<Bytef*>(out.data() + out_done);
      stream.avail_out = static_cast<uInt>(
          std::min<uint64_t>(out.size() - out_done, 1u << 30));
      const uInt in_before = stream.avail_in, out_before = stream.avail_out;
      rc = inflate(&stream, Z_NO_FLUSH);
      in_done += in_before - stream.avail_in;
      out_done += out_before - stream.avail_out;
      if (rc == Z_OK && in_before == stream.avail_in &&
          out_before == stream.avail_out) {
        rc = Z_BUF_ERROR;  // no progress: input ended or output is full
      }
    }
    inflateEnd(&stream);
    if (rc != Z_STREAM_END || out_done != e.uncompressed_size) {
      return Corrupt(absl::StrCat("deflate data of \"", name, "\""));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "zip entry \"", name, "\" uses compression method ", e.method,
        "; only stored (0) and deflate (8) are supported"));
  }
  // CRC over possibly >4 GiB data, in 1 GiB pieces.
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t off = 0; off < out.size(); off += 1u << 30) {
    const uInt n =
        static_cast<uInt>(std::min<uint64_t>(out.size() - off, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + off), n);
  }
  if (crc != e.crc32)
    return Corrupt(absl::StrCat("CRC mismatch in \"", name, "\""));
  return out;
}

}  // namespace primaps
