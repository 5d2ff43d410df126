// primaps-server: flags and config, start-up, wait for SIGTERM/SIGINT,
// drain, exit. Everything else lives in server.cc.
#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "base/command_line.h"
#include "base/cpu_support.h"
#include "base/log.h"
#include "server/server.h"

namespace {
// The defaults every flag shows and starts from (server/server_defaults.h).
const primaps::v1::ServerConfig& Defaults() {
  static const primaps::v1::ServerConfig* defaults =
      new primaps::v1::ServerConfig(primaps::DefaultServerConfig());
  return *defaults;
}
}  // namespace

ABSL_FLAG(std::string, config, "",
          "Text-format ServerConfig file; flags override it.");
ABSL_FLAG(std::string, listen, Defaults().listen(),
          "gRPC address (port 0 picks a free one).");
ABSL_FLAG(std::string, metrics_listen, Defaults().metrics_listen(),
          "Prometheus /metrics address; empty = off.");
ABSL_FLAG(std::string, http_listen, Defaults().http_listen(),
          "HTTP/JSON API and web page address; empty = off.");
ABSL_FLAG(std::string, backbone, Defaults().backbone(),
          "builtin, dino_vits8, dino_vits16, dino_vitb8, dino_vitb16, "
          "dinov2_vits14, dinov2_vitb14, "
          "dinov2_vits14_reg or dinov2_vitb14_reg.");
ABSL_FLAG(
    std::string, weights, "",
    "Backbone weights (.pth or .safetensors), or the reference's train.py "
    ".ckpt: a whole model, backbone and heads.");
ABSL_FLAG(int32_t, dino_block, 0,
          "Feature block as the reference's dino_block (1 = last); 0 = the "
          "reference checkpoint's, or the last.");
ABSL_FLAG(std::string, head, "",
          "Head checkpoint (.safetensors) to serve at start-up.");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "Directory for AdminService.LoadCheckpoint paths.");
ABSL_FLAG(std::string, model_repository, "",
          "Model repository to follow (a directory of numbered head "
          "versions, see deploy/README.md); excludes --head.");
ABSL_FLAG(int32_t, poll_interval_s, Defaults().poll_interval_s(),
          "Seconds between polls of --model_repository.");
ABSL_FLAG(std::string, version_policy, Defaults().version_policy(),
          "Which repository version to serve: latest or pinned:V (the "
          "repository's POLICY file overrides it).");
ABSL_FLAG(std::string, device, Defaults().device(), "cpu or cuda[:N].");
ABSL_FLAG(std::string, precision, Defaults().precision(),
          "The backbone's number format: fp32, bf16, fp16 (CUDA only) or "
          "auto (bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, fp32 "
          "elsewhere). bf16 is faster; its pseudo labels can differ.");
ABSL_FLAG(int32_t, threads, Defaults().threads(),
          "LibTorch intra-op threads for the backbone.");
ABSL_FLAG(int32_t, cpu_threads, 0,
          "CPU pool threads (decode, PriMaPs, CRF); 0 = one per core.");
ABSL_FLAG(int32_t, max_batch, Defaults().max_batch(),
          "Largest backbone batch.");
ABSL_FLAG(int32_t, max_queue_delay_ms, Defaults().max_queue_delay_ms(),
          "Longest wait for a batch to fill.");
ABSL_FLAG(int32_t, max_queue, Defaults().max_queue(),
          "Most requests in the server at once (queued or being processed); "
          "more are refused at once with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_backbone_queue, Defaults().max_backbone_queue(),
          "Of those, most images waiting for the backbone; more are refused "
          "with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, resize, Defaults().resize(),
          "Default short side after resizing.");
ABSL_FLAG(std::string, crop, Defaults().crop(),
          "Default crop: center or full.");
ABSL_FLAG(float, threshold, Defaults().threshold(),
          "Default PriMaPs threshold.");
ABSL_FLAG(int32_t, max_masks, Defaults().max_masks(),
          "Most PriMaPs masks per image (1..254); a decomposition it ends "
          "before 95% coverage counts in primaps_mask_cap_hits_total.");
ABSL_FLAG(std::string, resize_filter, "",
          "Resize filter for every method: antialias (Pillow's, as the "
          "reference's training and pseudo labels) or bilinear (torch's, as "
          "its validation); empty = antialias except for Segment.");
ABSL_FLAG(std::string, output_size, Defaults().output_size(),
          "Default label map size: processed (the preprocessed image's, as "
          "the reference) or original (the input image's, processed whole).");
ABSL_FLAG(std::string, crf_resolution, Defaults().crf_resolution(),
          "Where the CRF runs for original-size output: processed (then "
          "resized) or original.");
ABSL_FLAG(int64_t, max_tokens, Defaults().max_tokens(),
          "Most patch tokens per image; a default resize is lowered to fit, "
          "an explicit one is refused.");
ABSL_FLAG(int64_t, max_crf_pixels, Defaults().max_crf_pixels(),
          "Most pixels for a CRF at the original resolution.");
ABSL_FLAG(int32_t, max_large_in_flight, 0,
          "Requests over --large_request_tokens in the server at once; more "
          "are refused with RESOURCE_EXHAUSTED. Unset: half the CPU pool "
          "threads (at least 1); 0 = no separate limit.");
ABSL_FLAG(int64_t, large_request_tokens, Defaults().large_request_tokens(),
          "Patch tokens from which a request counts as large.");
ABSL_FLAG(int64_t, max_image_pixels, Defaults().max_image_pixels(),
          "Largest image accepted (pixels).");
ABSL_FLAG(int32_t, max_message_bytes, Defaults().max_message_bytes(),
          "Largest gRPC message.");
ABSL_FLAG(std::string, admin_token_file, "",
          "Bearer token for AdminService; empty = disabled.");
ABSL_FLAG(std::string, tls_cert, "", "Server certificate (PEM).");
ABSL_FLAG(std::string, tls_key, "", "Server private key (PEM).");
ABSL_FLAG(std::string, tls_client_ca, "", "CA for client certificates (mTLS).");
ABSL_FLAG(int32_t, drain_timeout_s, 30,
          "Longest wait for in-flight calls on SIGTERM.");
ABSL_FLAG(int32_t, mmap_threshold_kb, 4096,
          "Allocations from this size up get their own pages and go back to "
          "the system when freed (glibc's M_MMAP_THRESHOLD); 0 = glibc's "
          "adaptive default, which keeps the memory of large requests.");
ABSL_FLAG(int32_t, drain_grace_ms, 0,
          "On SIGTERM, report NOT_SERVING but keep serving this long before "
          "refusing calls.");

namespace {

// Applies each flag given on the command line over the config.
void ApplyFlags(const std::set<std::string>& given_flags,
                primaps::v1::ServerConfig* c) {
  auto given = [&](const char* name) { return given_flags.count(name) > 0; };
#define PRIMAPS_OVERRIDE(name) \
  if (given(#name)) c->set_##name(absl::GetFlag(FLAGS_##name))
  PRIMAPS_OVERRIDE(listen);
  PRIMAPS_OVERRIDE(metrics_listen);
  PRIMAPS_OVERRIDE(http_listen);
  PRIMAPS_OVERRIDE(backbone);
  PRIMAPS_OVERRIDE(weights);
  PRIMAPS_OVERRIDE(head);
  PRIMAPS_OVERRIDE(dino_block);
  PRIMAPS_OVERRIDE(checkpoint_dir);
  PRIMAPS_OVERRIDE(model_repository);
  PRIMAPS_OVERRIDE(poll_interval_s);
  PRIMAPS_OVERRIDE(version_policy);
  PRIMAPS_OVERRIDE(device);
  PRIMAPS_OVERRIDE(precision);
  PRIMAPS_OVERRIDE(threads);
  PRIMAPS_OVERRIDE(max_batch);
  PRIMAPS_OVERRIDE(max_queue_delay_ms);
  PRIMAPS_OVERRIDE(max_queue);
  PRIMAPS_OVERRIDE(max_backbone_queue);
  PRIMAPS_OVERRIDE(resize);
  PRIMAPS_OVERRIDE(crop);
  PRIMAPS_OVERRIDE(threshold);
  PRIMAPS_OVERRIDE(max_masks);
  PRIMAPS_OVERRIDE(resize_filter);
  PRIMAPS_OVERRIDE(output_size);
  PRIMAPS_OVERRIDE(crf_resolution);
  PRIMAPS_OVERRIDE(max_tokens);
  PRIMAPS_OVERRIDE(max_crf_pixels);
  PRIMAPS_OVERRIDE(large_request_tokens);
  PRIMAPS_OVERRIDE(max_image_pixels);
  PRIMAPS_OVERRIDE(max_message_bytes);
  PRIMAPS_OVERRIDE(admin_token_file);
  PRIMAPS_OVERRIDE(tls_cert);
  PRIMAPS_OVERRIDE(tls_key);
  PRIMAPS_OVERRIDE(tls_client_ca);
#undef PRIMAPS_OVERRIDE
  if (given("cpu_threads") && absl::GetFlag(FLAGS_cpu_threads) > 0) {
    c->set_cpu_threads(absl::GetFlag(FLAGS_cpu_threads));
    c->set_max_large_in_flight(std::max(1, c->cpu_threads() / 2));
  }
  if (given("max_large_in_flight")) {
    c->set_max_large_in_flight(
        std::max(0, absl::GetFlag(FLAGS_max_large_in_flight)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  primaps::SetUsage(
      "Serves PriMaPs mask proposals, pseudo labels, segmentation and features "
      "over gRPC.\n\n  primaps-server [--config=server.pbtxt] [flags]\n\n"
      "Flags override the config file; --help lists them.");
  const std::set<std::string> given_flags = primaps::FlagsGiven(argc, argv);
  absl::ParseCommandLine(argc, argv);
  primaps::SetLogProgramName("primaps-server");
  if (!primaps::CpuCanRunThisBuild("primaps-server")) return 1;
  // cpp-httplib writes without MSG_NOSIGNAL: a client that hangs up before
  // its answer is written must cost an EPIPE, not the process.
  signal(SIGPIPE, SIG_IGN);
  // A fixed threshold also turns off glibc's adaptive one, which rises to
  // 32 MB after large frees and then serves large requests from heaps it
  // never gives back (measured in docs/reliability.md).
  if (absl::GetFlag(FLAGS_mmap_threshold_kb) > 0)
    mallopt(M_MMAP_THRESHOLD, absl::GetFlag(FLAGS_mmap_threshold_kb) * 1024);
  // Block the shutdown signals in every thread (threads inherit the mask)
  // and take them synchronously in main with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  primaps::v1::ServerConfig config = primaps::DefaultServerConfig();
  if (!absl::GetFlag(FLAGS_config).empty()) {
    const absl::Status status =
        primaps::MergeServerConfigFile(absl::GetFlag(FLAGS_config), &config);
    if (!status.ok()) {
      primaps::LogError(status.message());
      return 2;
    }
  }
  ApplyFlags(given_flags, &config);
  auto server = primaps::Server::Create(config);
  if (!server.ok()) {
    primaps::LogError(
        absl::StrCat("cannot start: ", server.status().message()));
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  primaps::LogInfo(
      absl::StrCat("got ", signal == SIGTERM ? "SIGTERM" : "SIGINT"));
  (*server)->Drain(absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)),
                   absl::Milliseconds(absl::GetFlag(FLAGS_drain_grace_ms)));
  server->reset();
  primaps::LogInfo("exited cleanly");
  return 0;
}
