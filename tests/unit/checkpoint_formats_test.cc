// The checkpoint file formats: safetensors, zip, the restricted unpickler,
// torch.save state dicts, and backbone weight canonicalization.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "engine/backbone/backbone_weights.h"
#include "engine/checkpoint/pickle_reader.h"
#include "engine/checkpoint/pth_reader.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/zip_reader.h"
#include "tests/unit/test_images.h"

namespace primaps {
namespace {

using ::testing::HasSubstr;

std::string Fixture(const std::string& name) {
  return testing::ReadBinary(testing::FixturePath(name));
}

VitConfig TinyDino() {
  VitConfig c = *VitConfigByName("dino_vits8");
  c.dim = 64;
  c.depth = 2;
  c.heads = 4;
  c.mlp_hidden = 256;
  return c;
}

VitConfig TinyDinoV2(int registers) {
  VitConfig c =
      *VitConfigByName(registers ? "dinov2_vits14_reg" : "dinov2_vits14");
  c.dim = 64;
  c.depth = 2;
  c.heads = 4;
  c.mlp_hidden = 256;
  return c;
}

TensorMap LoadCanonical(const std::string& fixture, const VitConfig& config) {
  auto raw = ParseWeights(Fixture(fixture));
  EXPECT_TRUE(raw.ok()) << fixture << ": " << raw.status();
  if (!raw.ok()) return {};
  auto weights = CanonicalizeBackboneWeights(*std::move(raw), config);
  EXPECT_TRUE(weights.ok()) << fixture << ": " << weights.status();
  return weights.ok() ? *std::move(weights) : TensorMap{};
}

float MaxAbsDiff(const TensorMap& a, const TensorMap& b) {
  float worst = 0;
  for (const auto& [name, record] : a) {
    const std::vector<float> x = Float32Values(record),
                             y = Float32Values(b.at(name));
    for (size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::abs(x[i] - y[i]));
  }
  return worst;
}

TEST(SafetensorsTest, RoundTrip) {
  SafetensorsFile file;
  file.tensors["b"] = MakeFloat32({2, 3}, {1, 2, 3, 4, 5, 6});
  TensorRecord bytes;
  bytes.dtype = DType::kU8;
  bytes.shape = {3};
  bytes.data = "xyz";
  file.tensors["a"] = bytes;
  file.metadata["backbone"] = "dino_vits8";
  const std::string serialized = SerializeSafetensors(file);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = header_len << 8 | static_cast<uint8_t>(serialized[i]);
  EXPECT_EQ(header_len % 8, 0u);  // data starts 8-byte aligned
  EXPECT_EQ(serialized.size(), 8 + header_len + 24 + 3);
  auto back = ParseSafetensors(serialized);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->metadata.at("backbone"), "dino_vits8");
  EXPECT_EQ(Float32Values(back->tensors.at("b")),
            (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(back->tensors.at("a").data, "xyz");
}

TEST(SafetensorsTest, BadFilesNameTheProblem) {
  SafetensorsFile file;
  file.tensors["weight"] = MakeFloat32({4}, {1, 2, 3, 4});
  const std::string good = SerializeSafetensors(file);
  // Truncated data: the byte range of "weight" leaves the file.
  auto truncated = ParseSafetensors(good.substr(0, good.size() - 3));
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(truncated.status().message()),
              HasSubstr("\"weight\""));
  // Truncated header.
  EXPECT_THAT(
      std::string(ParseSafetensors(good.substr(0, 20)).status().message()),
      HasSubstr("header length"));
  EXPECT_FALSE(ParseSafetensors("").ok());
  // Shape that disagrees with the byte range.
  std::string lying = good;
  const size_t at = lying.find("[4]");
  lying.replace(at, 3, "[5]");
  EXPECT_THAT(std::string(ParseSafetensors(lying).status().message()),
              HasSubstr("needs 20 bytes"));
  // Not JSON.
  std::string garbage = good;
  garbage[9] = '#';
  EXPECT_THAT(std::string(ParseSafetensors(garbage).status().message()),
              HasSubstr("JSON"));
  // Unknown dtype.
  std::string dtype = good;
  dtype.replace(dtype.find("F32"), 3, "Q32");
  EXPECT_THAT(std::string(ParseSafetensors(dtype).status().message()),
              HasSubstr("unknown dtype"));
}

TEST(ZipReaderTest, ReadsTorchSaveArchive) {
  const std::string bytes = Fixture("dino_tiny.pth");
  auto zip = ZipReader::Open(bytes);
  ASSERT_TRUE(zip.ok()) << zip.status();
  EXPECT_TRUE((*zip)->Contains("dino_tiny/data.pkl"));
  EXPECT_TRUE((*zip)->Read("dino_tiny/data.pkl").ok());
  EXPECT_EQ((*zip)->Read("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(ZipReaderTest, CorruptionIsDetected) {
  std::string bytes = Fixture("dino_tiny.pth");
  auto zip = ZipReader::Open(bytes);
  ASSERT_TRUE(zip.ok());
  // Flip one byte inside a stored tensor: the CRC check must catch it.
  std::string flipped = bytes;
  const size_t pos = flipped.find("dino_tiny/data/0");
  ASSERT_NE(pos, std::string::npos);
  flipped[pos + 200] ^= 0x5A;
  auto zip2 = ZipReader::Open(flipped);
  ASSERT_TRUE(zip2.ok());
  bool any_crc = false;
  for (const std::string& name : (*zip2)->EntryNames()) {
    auto r = (*zip2)->Read(name);
    if (!r.ok() &&
        std::string(r.status().message()).find("CRC") != std::string::npos)
      any_crc = true;
  }
  EXPECT_TRUE(any_crc);
}

TEST(PickleTest, DisallowedGlobalIsRefusedByName) {
  auto state = ReadPthStateDict(Fixture("evil_global.pth"));
  ASSERT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(state.status().message()),
              HasSubstr("disallowed global \"posix.system\""));
}

TEST(PickleTest, HandWrittenPickles) {
  // {'a': [1, -2, 3.5], 'b': (True, None)} in protocol 2.
  static const char kPickle[] =
      "\x80\x02}q\x00(X\x01\x00\x00\x00"
      "aq\x01]q\x02(K\x01J\xfe\xff\xff\xff"
      "G@\x0c\x00\x00\x00\x00\x00\x00"
      "eX\x01\x00\x00\x00"
      "bq\x03\x88N\x86q\x04u.";
  const std::string p(kPickle, sizeof(kPickle) - 1);
  auto graph = ParsePickle(p);
  ASSERT_TRUE(graph.ok()) << graph.status();
  const int32_t list = graph->Find(graph->root, "a");
  ASSERT_GE(list, 0);
  const PickleValue& l = graph->at(list);
  ASSERT_EQ(l.items.size(), 3u);
  EXPECT_EQ(graph->at(l.items[1]).int_value, -2);
  EXPECT_EQ(graph->at(l.items[2]).float_value, 3.5);
  EXPECT_EQ(graph->at(graph->Find(graph->root, "b")).kind,
            PickleValue::Kind::kTuple);
  // Every prefix is an error, never a crash.
  for (size_t n = 0; n < p.size(); ++n)
    EXPECT_FALSE(ParsePickle(p.substr(0, n)).ok()) << n;
  // GLOBAL with the text opcode names the culprit too.
  EXPECT_THAT(std::string(ParsePickle("\x80\x02"
                                      "cbuiltins\neval\n.")
                              .status()
                              .message()),
              HasSubstr("builtins.eval"));
  EXPECT_FALSE(ParsePickle("\x80\x02h\x07.").ok());  // unset memo
  EXPECT_FALSE(ParsePickle("\x80\x02s.").ok());      // stack underflow
}

TEST(PthReaderTest, StateDictWithMetadata) {
  auto state = ReadPthStateDict(Fixture("dino_tiny.pth"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->source, "");
  EXPECT_EQ(state->tensors.at("pos_embed").shape,
            (std::vector<int64_t>{1, 17, 64}));
  EXPECT_EQ(state->tensors.at("blocks.1.attn.qkv.weight").shape,
            (std::vector<int64_t>{192, 64}));
}

TEST(PthReaderTest, HalfPrecisionStoragesWiden) {
  const TensorMap f32 = LoadCanonical("dino_tiny.pth", TinyDino());
  const TensorMap f16 = LoadCanonical("dino_tiny_fp16.pth", TinyDino());
  const TensorMap bf16 = LoadCanonical("dino_tiny_bf16.pth", TinyDino());
  ASSERT_EQ(f32.size(), f16.size());
  ASSERT_EQ(f32.size(), bf16.size());
  // Rounding error of each format for values of magnitude < 4.
  EXPECT_LT(MaxAbsDiff(f32, f16), 4 * 1e-3f);
  EXPECT_LT(MaxAbsDiff(f32, bf16), 4 * 8e-3f);
  EXPECT_GT(MaxAbsDiff(f32, bf16), 0.f);  // really was rounded
}

TEST(PthReaderTest, DinoTrainingCheckpointUsesTeacher) {
  auto state = ReadPthStateDict(Fixture("dino_tiny_train.pth"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->source, "teacher");
  const TensorMap official = LoadCanonical("dino_tiny.pth", TinyDino());
  const TensorMap teacher = LoadCanonical("dino_tiny_train.pth", TinyDino());
  ASSERT_EQ(teacher.size(), official.size());
  EXPECT_EQ(MaxAbsDiff(official, teacher), 0.f);
}

TEST(BackboneWeightsTest, HuggingFaceLayoutsMapToOfficial) {
  EXPECT_EQ(MaxAbsDiff(LoadCanonical("dino_tiny.pth", TinyDino()),
                       LoadCanonical("dino_tiny_hf.safetensors", TinyDino())),
            0.f);
  EXPECT_EQ(
      MaxAbsDiff(LoadCanonical("dinov2_tiny.pth", TinyDinoV2(0)),
                 LoadCanonical("dinov2_tiny_hf.safetensors", TinyDinoV2(0))),
      0.f);
  EXPECT_EQ(
      MaxAbsDiff(LoadCanonical("dinov2_reg_tiny.pth", TinyDinoV2(4)),
                 LoadCanonical("dinov2_reg_tiny.safetensors", TinyDinoV2(4))),
      0.f);
}

TEST(BackboneWeightsTest, WrongArchitectureNamesKeys) {
  auto raw = ParseWeights(Fixture("dino_tiny.pth"));
  ASSERT_TRUE(raw.ok());
  // DINO weights into a DINOv2 config: layer scales missing, patch size off.
  auto weights = CanonicalizeBackboneWeights(*raw, TinyDinoV2(0));
  ASSERT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(weights.status().message());
  EXPECT_THAT(message, HasSubstr("missing: blocks.0.ls1.gamma"));
  EXPECT_THAT(message, HasSubstr("patch_embed.proj.weight is [64, 3, 8, 8], "
                                 "expected [64, 3, 14, 14]"));
  // Full-size config: every block past the second is missing.
  auto full = CanonicalizeBackboneWeights(*raw, *VitConfigByName("dino_vits8"));
  EXPECT_THAT(std::string(full.status().message()),
              HasSubstr("blocks.10.attn.proj.bias"));
}

TEST(BackboneWeightsTest, MissingAndUnexpectedKeys) {
  auto raw = ParseWeights(Fixture("dino_tiny.pth"));
  ASSERT_TRUE(raw.ok());
  TensorMap edited = *raw;
  edited.erase("norm.bias");
  edited["blocks.0.attn.extra"] = MakeFloat32({1}, {0});
  auto weights = CanonicalizeBackboneWeights(edited, TinyDino());
  const std::string message(weights.status().message());
  EXPECT_THAT(message, HasSubstr("missing: norm.bias"));
  EXPECT_THAT(message, HasSubstr("unexpected: blocks.0.attn.extra"));
}

TEST(BackboneWeightsTest, TruncatedFilesAreErrors) {
  for (const char* name :
       {"dino_tiny.pth", "dino_tiny_hf.safetensors", "dino_tiny_train.pth"}) {
    const std::string bytes = Fixture(name);
    for (size_t keep : {size_t{0}, size_t{5}, size_t{100}, bytes.size() / 2,
                        bytes.size() - 1}) {
      auto weights = ParseWeights(bytes.substr(0, keep));
      EXPECT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument)
          << name << " cut to " << keep;
    }
  }
}

TEST(BackboneWeightsTest, LegacyFormatGetsAHint) {
  auto weights = ParseWeights(std::string("\x80\x02\x8a\x0a", 4));
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("legacy"));
}

TEST(BackboneWeightsTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadWeightsFile("/nonexistent/weights.pth").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace primaps
