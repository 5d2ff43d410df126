// primaps-client: one-shot calls to a primaps-server.
//
//   primaps-client propose|pseudo|segment --server=HOST:PORT --image=PATH
//   --out=LABELS.png
//       [--overlay=OVERLAY.png] [--output_size=processed|original]
//       [--resize=N] [--crop=center|full]
//       [--threshold=T] [--crf=true|false]
//   primaps-client features --server=HOST:PORT --image=PATH --out=FEATURES.npy
//       [--features=backbone|projection]
//   primaps-client admin load|status|rollback --server=HOST:PORT
//   --token_file=PATH
//       [--path=REL_PATH | --file=LOCAL.safetensors]
//   primaps-client label --server=HOST:PORT[,HOST:PORT...] --input=DIR|LIST.txt
//   --output=DIR
//       [--mode=propose|pseudo|segment] [--concurrency=N] [--shard=I/N]
//       [--overlays]
//       [--layout=mirror|reference] [--retries=N] [--deadline_ms=N]
//       [--resume=false]
//   primaps-client bench --server=HOST:PORT --image=PATH
//   [--rpc=propose|pseudo|segment|features]
//       [--concurrency=N] [--duration_s=S] [--deadline_ms=N]
//   primaps-client health --server=HOST:PORT
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "client/label_call.h"
#include "client/label_job.h"
#include "client/load_generator.h"
#include "client/npy_writer.h"
#include "client/primaps_client.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "proto/option_names.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "Server address HOST:PORT.");
ABSL_FLAG(std::string, image, "", "Input image.");
ABSL_FLAG(std::string, out, "", "Output: label PNG, or .npy for features.");
ABSL_FLAG(std::string, overlay, "",
          "Also write the image blended with the label colours.");
ABSL_FLAG(int32_t, resize, 0, "Short side after resizing; 0 = server default.");
ABSL_FLAG(std::string, crop, "", "center or full; empty = server default.");
ABSL_FLAG(std::string, resize_filter, "",
          "antialias (Pillow's, as the reference's pseudo labels) or bilinear "
          "(torch's, as its evaluation); empty = server default.");
ABSL_FLAG(std::string, output_size, "",
          "processed (the preprocessed image's size) or original (the input "
          "image's, processed whole); empty = the server's default, and "
          "original for label.");
ABSL_FLAG(std::string, crf_resolution, "",
          "Where the CRF runs for original-size output: processed or "
          "original; empty = the server's default.");
ABSL_FLAG(std::optional<float>, threshold, std::nullopt,
          "PriMaPs threshold; unset = server default.");
ABSL_FLAG(std::optional<bool>, crf, std::nullopt,
          "Dense CRF refinement; unset = on.");
ABSL_FLAG(std::string, features, "backbone",
          "features: backbone (what PriMaPs reads) or projection (the code "
          "STEGO's heads read, on a server serving STEGO's checkpoint).");
ABSL_FLAG(std::string, type, "float32",
          "features: float32 or float16 on the wire (.npy is float32).");
ABSL_FLAG(std::string, token_file, "", "admin: file with the bearer token.");
ABSL_FLAG(std::string, path, "",
          "admin load: checkpoint path inside the server's --checkpoint_dir.");
ABSL_FLAG(std::string, file, "",
          "admin load: local checkpoint file to send inline.");
ABSL_FLAG(int32_t, deadline_ms, 60000, "Deadline per attempt.");
ABSL_FLAG(int32_t, retries, 3, "Retries on UNAVAILABLE / RESOURCE_EXHAUSTED.");
ABSL_FLAG(
    std::string, input, "",
    "label: a directory (recursive) or a file with one image path per line.");
ABSL_FLAG(std::string, output, "", "label: output directory.");
ABSL_FLAG(std::string, mode, "pseudo", "label: propose, pseudo or segment.");
ABSL_FLAG(int32_t, concurrency, 8, "label: images in flight.");
ABSL_FLAG(std::string, shard, "0/1",
          "label: I/N, this job's shard; JOB_COMPLETION_INDEX (Kubernetes "
          "Indexed Jobs) overrides I.");
ABSL_FLAG(bool, overlays, false, "label: also write colour overlays.");
ABSL_FLAG(std::string, layout, "mirror",
          "label: mirror, or reference (imgs/, pseudos/, gts/).");
ABSL_FLAG(
    std::string, labels, "",
    "label: ground-truth label directory for the reference layout's gts/.");
ABSL_FLAG(bool, resume, true,
          "label: skip images whose output is already complete.");
ABSL_FLAG(std::string, rpc, "propose",
          "bench: propose, pseudo, segment or features.");
ABSL_FLAG(int32_t, duration_s, 10, "bench: seconds of load.");
ABSL_FLAG(std::string, tls_ca, "",
          "CA certificate to verify the server (turns TLS on).");
ABSL_FLAG(std::string, tls_cert, "", "Client certificate (mTLS).");
ABSL_FLAG(std::string, tls_key, "", "Client key (mTLS).");

namespace primaps {
namespace {

absl::StatusOr<std::unique_ptr<PrimapsClient>> MakeClient() {
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  options.retries = absl::GetFlag(FLAGS_retries);
  options.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    ASSIGN_OR_RETURN(options.admin_token,
                     ReadTokenFile(absl::GetFlag(FLAGS_token_file)));
  }
  return PrimapsClient::Create(options);
}

absl::StatusOr<v1::Preprocess> PreprocessFromFlags() {
  v1::Preprocess p;
  p.set_resize(absl::GetFlag(FLAGS_resize));
  ASSIGN_OR_RETURN(const v1::CropMode crop,
                   ParseCropMode("--crop", absl::GetFlag(FLAGS_crop)));
  p.set_crop(crop);
  ASSIGN_OR_RETURN(
      const v1::ResizeFilter filter,
      ParseResizeFilter("--resize_filter", absl::GetFlag(FLAGS_resize_filter)));
  p.set_resize_filter(filter);
  if (absl::GetFlag(FLAGS_threshold).has_value())
    p.set_threshold(*absl::GetFlag(FLAGS_threshold));
  if (absl::GetFlag(FLAGS_crf).has_value())
    p.set_crf(*absl::GetFlag(FLAGS_crf));
  ASSIGN_OR_RETURN(
      const v1::OutputSize size,
      ParseOutputSize("--output_size", absl::GetFlag(FLAGS_output_size)));
  p.set_output_size(size);
  ASSIGN_OR_RETURN(const v1::CrfResolution crf_at,
                   ParseCrfResolution("--crf_resolution",
                                      absl::GetFlag(FLAGS_crf_resolution)));
  p.set_crf_resolution(crf_at);
  return p;
}

absl::Status RunLabels(const std::string& command) {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (absl::GetFlag(FLAGS_image).empty() || out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(command, " needs --image and --out"));
  }
  ASSIGN_OR_RETURN(const LabelMode mode, ParseLabelMode(command, "command"));
  ASSIGN_OR_RETURN(const std::string bytes,
                   ReadFile(absl::GetFlag(FLAGS_image)));
  ASSIGN_OR_RETURN(auto client, MakeClient());
  v1::ImageRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_image));
  request.mutable_image()->set_encoded(bytes);
  ASSIGN_OR_RETURN(*request.mutable_preprocess(), PreprocessFromFlags());
  ASSIGN_OR_RETURN(const LabelCallResult r,
                   CallLabels(client.get(), mode, request));
  ASSIGN_OR_RETURN(const std::string png, EncodeLabelPng(r.labels));
  RETURN_IF_ERROR(WriteFileAtomically(out, png));
  const std::string overlay = absl::GetFlag(FLAGS_overlay);
  if (!overlay.empty()) {
    ASSIGN_OR_RETURN(const std::string overlay_png, OverlayPng(bytes, r, mode));
    RETURN_IF_ERROR(WriteFileAtomically(overlay, overlay_png));
  }
  const std::string what = mode == LabelMode::kSegment
                               ? absl::StrCat(r.classes, " classes")
                               : absl::StrCat(r.masks, " masks");
  std::printf(
      "%s: %dx%d labels (%s size) for a %ux%u image, %s, head version "
      "%llu -> %s\n",
      command.c_str(), r.labels.width, r.labels.height,
      std::string(OutputSizeName(r.geometry.output_size())).c_str(),
      r.geometry.input_width(), r.geometry.input_height(), what.c_str(),
      static_cast<unsigned long long>(r.model.head_version()), out.c_str());
  return absl::OkStatus();
}

absl::Status RunFeatures() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (absl::GetFlag(FLAGS_image).empty() || out.empty()) {
    return absl::InvalidArgumentError("features needs --image and --out");
  }
  ASSIGN_OR_RETURN(const std::string bytes,
                   ReadFile(absl::GetFlag(FLAGS_image)));
  ASSIGN_OR_RETURN(auto client, MakeClient());
  v1::FeatureRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_image));
  request.mutable_image()->set_encoded(bytes);
  ASSIGN_OR_RETURN(*request.mutable_preprocess(), PreprocessFromFlags());
  request.set_type(v1::FEATURE_TYPE_FLOAT32);  // .npy holds float32
  const std::string kind = absl::GetFlag(FLAGS_features);
  if (kind != "backbone" && kind != "projection") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--features is \"", kind, "\"; expected backbone or projection"));
  }
  request.set_features(kind == "projection" ? v1::FEATURE_KIND_PROJECTION
                                            : v1::FEATURE_KIND_BACKBONE);
  ASSIGN_OR_RETURN(v1::FeatureResponse r, client->ExtractFeatures(request));
  RETURN_IF_ERROR(WriteFileAtomically(
      out, EncodeNpyFloat32({r.dim(), r.height(), r.width()}, r.data())));
  std::printf("features: %u x %u x %u float32 (%s) from %s -> %s\n", r.dim(),
              r.height(), r.width(), kind.c_str(), r.model().backbone().c_str(),
              out.c_str());
  return absl::OkStatus();
}

void PrintModel(const v1::ModelInfo& m) {
  std::printf(
      "backbone %s, head version %llu, %u classes, digest %s\n",
      m.backbone().c_str(), static_cast<unsigned long long>(m.head_version()),
      m.classes(),
      m.checkpoint_digest().empty() ? "-" : m.checkpoint_digest().c_str());
}

std::atomic<bool> g_stop{false};

void RequestStop(int) { g_stop = true; }

// Exit codes: 0 every image labelled or already done, 1 some failed,
// 3 interrupted (rerun to continue).
absl::StatusOr<int> RunLabelCommand() {
  LabelJobOptions options;
  for (absl::string_view server :
       absl::StrSplit(absl::GetFlag(FLAGS_server), ',', absl::SkipEmpty())) {
    options.servers.emplace_back(server);
  }
  options.input = absl::GetFlag(FLAGS_input);
  options.output = absl::GetFlag(FLAGS_output);
  if (options.input.empty() || options.output.empty()) {
    return absl::InvalidArgumentError("label needs --input and --output");
  }
  options.mode = absl::GetFlag(FLAGS_mode);
  options.concurrency = absl::GetFlag(FLAGS_concurrency);
  options.retries = absl::GetFlag(FLAGS_retries);
  options.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  options.overlays = absl::GetFlag(FLAGS_overlays);
  options.layout = absl::GetFlag(FLAGS_layout);
  options.labels_dir = absl::GetFlag(FLAGS_labels);
  options.resize = absl::GetFlag(FLAGS_resize);
  options.resume = absl::GetFlag(FLAGS_resume);
  if (!absl::GetFlag(FLAGS_output_size).empty())
    options.output_size = absl::GetFlag(FLAGS_output_size);
  const std::string shard = absl::GetFlag(FLAGS_shard);
  const std::vector<std::string> parts = absl::StrSplit(shard, '/');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &options.shard_count) ||
      (!parts[0].empty() &&
       !absl::SimpleAtoi(parts[0], &options.shard_index))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shard is \"", shard, "\", expected I/N"));
  }
  if (const char* index = std::getenv("JOB_COMPLETION_INDEX");
      index != nullptr && *index != '\0') {
    if (!absl::SimpleAtoi(index, &options.shard_index)) {
      return absl::InvalidArgumentError(
          absl::StrCat("JOB_COMPLETION_INDEX is \"", index, "\""));
    }
  }
  options.stop = &g_stop;
  ::signal(SIGINT, RequestStop);
  ::signal(SIGTERM, RequestStop);
  ASSIGN_OR_RETURN(const LabelJobSummary s, RunLabelJob(options));
  std::printf(
      "label: shard %d/%d: %lld images, %lld labelled, %lld already done, %lld "
      "failed in %.1f s (%.1f img/s)%s\n",
      options.shard_index, options.shard_count, static_cast<long long>(s.total),
      static_cast<long long>(s.done), static_cast<long long>(s.skipped),
      static_cast<long long>(s.failed), s.seconds,
      s.done / std::max(s.seconds, 1e-9),
      s.interrupted ? "; interrupted, rerun to continue" : "");
  if (s.failed > 0) {
    std::printf("label: failures are listed in %s/manifest-%d-of-%d.jsonl\n",
                options.output.c_str(), options.shard_index,
                options.shard_count);
  }
  return s.interrupted ? 3 : (s.failed > 0 ? 1 : 0);
}

absl::Status RunAdmin(const std::string& action) {
  ASSIGN_OR_RETURN(auto client, MakeClient());
  if (client->options().admin_token.empty())
    return absl::InvalidArgumentError("admin needs --token_file");
  if (action == "load") {
    v1::LoadCheckpointRequest request;
    if (!absl::GetFlag(FLAGS_path).empty()) {
      request.set_path(absl::GetFlag(FLAGS_path));
    } else if (!absl::GetFlag(FLAGS_file).empty()) {
      ASSIGN_OR_RETURN(*request.mutable_data(),
                       ReadFile(absl::GetFlag(FLAGS_file), 1 << 30));
    } else {
      return absl::InvalidArgumentError(
          "admin load needs --path (on the server) or --file (sent inline)");
    }
    ASSIGN_OR_RETURN(v1::LoadCheckpointResponse r,
                     client->LoadCheckpoint(request));
    std::printf("loaded: ");
    PrintModel(r.model());
  } else if (action == "status") {
    ASSIGN_OR_RETURN(v1::ModelStatus r, client->GetModelStatus());
    std::printf("serving: ");
    PrintModel(r.model());
    for (const auto& old : r.history()) {
      std::printf("earlier: ");
      PrintModel(old);
    }
    std::printf("swaps %llu, refused %llu\n",
                static_cast<unsigned long long>(r.swaps()),
                static_cast<unsigned long long>(r.refused_swaps()));
  } else if (action == "rollback") {
    ASSIGN_OR_RETURN(v1::RollbackResponse r, client->Rollback());
    std::printf("rolled back: ");
    PrintModel(r.model());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown admin action \"", action,
                     "\"; expected load, status or rollback"));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace primaps

int main(int argc, char** argv) {
  primaps::SetUsage(
      "primaps-client COMMAND --server=HOST:PORT [flags]\n\n"
      "  propose|pseudo|segment --image=PATH --out=LABELS.png [--overlay=PNG]\n"
      "  features --image=PATH --out=FEATURES.npy\n"
      "  label --input=DIR|LIST.txt --output=DIR   (the batch job)\n"
      "  bench                                      (load generator)\n"
      "  admin load|status|rollback --token_file=PATH [--path=...]\n"
      "  health\n\n"
      "--help lists the flags.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: %s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  const std::string command = args[1];
  absl::Status status;
  if (command == "propose" || command == "pseudo" || command == "segment") {
    status = primaps::RunLabels(command);
  } else if (command == "features") {
    status = primaps::RunFeatures();
  } else if (command == "admin") {
    status =
        args.size() < 3
            ? absl::InvalidArgumentError("admin needs load, status or rollback")
            : primaps::RunAdmin(args[2]);
  } else if (command == "bench") {
    primaps::LoadOptions load;
    load.server = absl::GetFlag(FLAGS_server);
    load.rpc = absl::GetFlag(FLAGS_rpc);
    load.concurrency = absl::GetFlag(FLAGS_concurrency);
    load.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
    load.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
    load.resize = absl::GetFlag(FLAGS_resize);
    auto image = primaps::ReadFile(absl::GetFlag(FLAGS_image));
    auto report = image.ok()
                      ? (load.image = *image, primaps::RunLoad(load))
                      : absl::StatusOr<primaps::LoadReport>(image.status());
    if (report.ok()) {
      std::printf("%s", primaps::FormatLoadReport(load, *report).c_str());
      return 0;
    }
    status = report.status();
  } else if (command == "label") {
    auto code = primaps::RunLabelCommand();
    if (code.ok()) return *code;
    status = code.status();
  } else if (command == "health") {
    auto client = primaps::MakeClient();
    auto health = client.ok() ? (*client)->Health()
                              : absl::StatusOr<std::string>(client.status());
    if (health.ok()) {
      std::printf("%s\n", health->c_str());
      return *health == "SERVING" ? 0 : 1;
    }
    status = health.status();
  } else {
    status = absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", command, "\""));
  }
  if (!status.ok()) {
    std::fprintf(stderr, "primaps-client %s: %s: %s\n", command.c_str(),
                 absl::StatusCodeToString(status.code()).c_str(),
                 std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
