#include "engine/image/image_header.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace primaps {
namespace {

// Bounds-checked big/little-endian reads. Each returns false past the end.
class ByteReader {
 public:
  explicit ByteReader(absl::string_view bytes) : bytes_(bytes) {}

  size_t size() const { return bytes_.size(); }
  bool Has(size_t offset, size_t n) const {
    return offset <= bytes_.size() && n <= bytes_.size() - offset;
  }
  bool U8(size_t offset, uint32_t* out) const {
    if (!Has(offset, 1)) return false;
    *out = static_cast<uint8_t>(bytes_[offset]);
    return true;
  }
  bool U16(size_t offset, bool big_endian, uint32_t* out) const {
    if (!Has(offset, 2)) return false;
    const uint32_t a = static_cast<uint8_t>(bytes_[offset]);
    const uint32_t b = static_cast<uint8_t>(bytes_[offset + 1]);
    *out = big_endian ? (a << 8 | b) : (b << 8 | a);
    return true;
  }
  bool U32(size_t offset, bool big_endian, uint32_t* out) const {
    uint32_t hi, lo;
    if (!U16(offset, big_endian, big_endian ? &hi : &lo) ||
        !U16(offset + 2, big_endian, big_endian ? &lo : &hi)) {
      return false;
    }
    *out = hi << 16 | lo;
    return true;
  }
  bool Matches(size_t offset, absl::string_view magic) const {
    return Has(offset, magic.size()) &&
           bytes_.substr(offset, magic.size()) == magic;
  }

 private:
  absl::string_view bytes_;
};

absl::Status Truncated(const char* format) {
  return absl::InvalidArgumentError(
      absl::StrCat(format, " header is truncated or corrupt"));
}

absl::StatusOr<ImageHeader> ReadPng(const ByteReader& r) {
  // Signature (8), then the IHDR chunk: length (4), "IHDR", width, height.
  ImageHeader header{ImageFormat::kPng};
  uint32_t w, h;
  if (!r.Matches(12, "IHDR") || !r.U32(16, true, &w) || !r.U32(20, true, &h)) {
    return Truncated("PNG");
  }
  header.width = w;
  header.height = h;
  return header;
}

absl::StatusOr<ImageHeader> ReadJpeg(const ByteReader& r) {
  ImageHeader header{ImageFormat::kJpeg};
  size_t pos = 2;
  bool have_size = false;
  while (true) {
    uint32_t byte;
    if (!r.U8(pos, &byte) || byte != 0xFF) return Truncated("JPEG");
    // Any number of 0xFF fill bytes may precede a marker code.
    uint32_t marker;
    do {
      ++pos;
      if (!r.U8(pos, &marker)) return Truncated("JPEG");
    } while (marker == 0xFF);
    ++pos;
    if (marker == 0xD8 || marker == 0x01 ||
        (marker >= 0xD0 && marker <= 0xD7)) {
      continue;  // Markers without a length field.
    }
    if (marker == 0xD9)
      return Truncated("JPEG");  // End of image before a scan.
    uint32_t length;
    if (!r.U16(pos, true, &length) || length < 2) return Truncated("JPEG");
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 &&
                        marker != 0xC8 && marker != 0xCC;
    if (is_sof && !have_size) {
      uint32_t h, w;
      if (!r.U16(pos + 3, true, &h) || !r.U16(pos + 5, true, &w)) {
        return Truncated("JPEG");
      }
      header.width = w;
      header.height = h;
      have_size = true;
    }
    if (marker == 0xDA) {  // Start of scan: entropy-coded data follows.
      if (!have_size) return Truncated("JPEG");
      header.jpeg_scan_offset = pos;
      return header;
    }
    pos += length;
  }
}

absl::StatusOr<ImageHeader> ReadBmp(const ByteReader& r) {
  ImageHeader header{ImageFormat::kBmp};
  uint32_t dib_size;
  if (!r.U32(14, false, &dib_size)) return Truncated("BMP");
  if (dib_size == 12) {  // BITMAPCOREHEADER: 16-bit unsigned sizes.
    uint32_t w, h;
    if (!r.U16(18, false, &w) || !r.U16(20, false, &h)) return Truncated("BMP");
    header.width = w;
    header.height = h;
    return header;
  }
  uint32_t w, h;
  if (!r.U32(18, false, &w) || !r.U32(22, false, &h)) return Truncated("BMP");
  // Signed 32-bit fields; a negative height means top-down rows.
  header.width = static_cast<int32_t>(w);
  const int64_t signed_h = static_cast<int32_t>(h);
  header.height = signed_h < 0 ? -signed_h : signed_h;
  return header;
}

absl::StatusOr<ImageHeader> ReadWebp(const ByteReader& r) {
  ImageHeader header{ImageFormat::kWebp};
  uint32_t a, b, c;
  if (r.Matches(12, "VP8 ")) {
    // Lossy: frame tag (3), start code 9d 01 2a, then 14-bit sizes.
    if (!r.Matches(23, "\x9d\x01\x2a") || !r.U16(26, false, &a) ||
        !r.U16(28, false, &b)) {
      return Truncated("WebP");
    }
    header.width = a & 0x3FFF;
    header.height = b & 0x3FFF;
    return header;
  }
  if (r.Matches(12, "VP8L")) {
    // Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each.
    if (!r.U8(20, &a) || a != 0x2F || !r.U32(21, false, &b)) {
      return Truncated("WebP");
    }
    header.width = (b & 0x3FFF) + 1;
    header.height = ((b >> 14) & 0x3FFF) + 1;
    return header;
  }
  if (r.Matches(12, "VP8X")) {
    // Extended: flags (4), then 24-bit canvas width-1 and height-1.
    if (!r.U16(24, false, &a) || !r.U8(26, &b) || !r.U16(27, false, &c)) {
      return Truncated("WebP");
    }
    uint32_t d;
    if (!r.U8(29, &d)) return Truncated("WebP");
    header.width = static_cast<int64_t>(a | b << 16) + 1;
    header.height = static_cast<int64_t>(c | d << 16) + 1;
    return header;
  }
  return Truncated("WebP");
}

absl::StatusOr<ImageHeader> ReadTiff(const ByteReader& r) {
  ImageHeader header{ImageFormat::kTiff};
  const bool big = r.Matches(0, "MM");
  uint32_t ifd, count;
  if (!r.U32(4, big, &ifd) || !r.U16(ifd, big, &count))
    return Truncated("TIFF");
  bool have_w = false, have_h = false;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t entry = static_cast<size_t>(ifd) + 2 + 12 * i;
    uint32_t tag, type, value;
    if (!r.U16(entry, big, &tag) || !r.U16(entry + 2, big, &type)) {
      return Truncated("TIFF");
    }
    if (tag != 256 && tag != 257) continue;
    // Type 3 is SHORT (stored in the first two value bytes), 4 is LONG.
    const bool ok = type == 3 ? r.U16(entry + 8, big, &value)
                              : r.U32(entry + 8, big, &value);
    if (!ok) return Truncated("TIFF");
    (tag == 256 ? header.width : header.height) = value;
    (tag == 256 ? have_w : have_h) = true;
  }
  if (!have_w || !have_h) {
    return absl::InvalidArgumentError("TIFF header has no image size");
  }
  return header;
}

}  // namespace

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kTiff:
      return "TIFF";
  }
  return "unknown";
}

absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view bytes) {
  if (bytes.empty())
    return absl::InvalidArgumentError("image is empty (0 bytes)");
  const ByteReader r(bytes);
  absl::StatusOr<ImageHeader> header;
  if (r.Matches(0, "\x89PNG\r\n\x1a\n")) {
    header = ReadPng(r);
  } else if (r.Matches(0, "\xFF\xD8")) {
    header = ReadJpeg(r);
  } else if (r.Matches(0, "BM")) {
    header = ReadBmp(r);
  } else if (r.Matches(0, "RIFF") && r.Matches(8, "WEBP")) {
    header = ReadWebp(r);
  } else if (r.Matches(0, absl::string_view("II*\0", 4)) ||
             r.Matches(0, absl::string_view("MM\0*", 4))) {
    header = ReadTiff(r);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported image format (", bytes.size(),
                     " bytes, not PNG, JPEG, BMP, WebP or TIFF)"));
  }
  if (!header.ok()) return header;
  if (header->width <= 0 || header->height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(ImageFormatName(header->format), " header declares size ",
                     header->width, "x", header->height));
  }
  return header;
}

}  // namespace primaps
