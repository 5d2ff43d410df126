// The server's defaults, in one place: DefaultServerConfig (and through it
// the flags of primaps-server) and the option structs of the batcher and
// the pipeline start from these.
#ifndef PRIMAPS_SERVER_SERVER_DEFAULTS_H_
#define PRIMAPS_SERVER_SERVER_DEFAULTS_H_

#include <cstdint>

namespace primaps {
namespace server_defaults {

inline constexpr char kListen[] = "0.0.0.0:50051";
inline constexpr char kMetricsListen[] = "0.0.0.0:9464";
inline constexpr char kHttpListen[] = "0.0.0.0:8080";
inline constexpr char kBackbone[] = "builtin";
inline constexpr char kDevice[] = "cpu";
// fp32: pseudo labels from bf16 features can differ from fp32's
// (docs/benchmarks.md).
inline constexpr char kPrecision[] = "fp32";
inline constexpr int kThreads = 1;
inline constexpr int kPollIntervalS = 10;
inline constexpr char kVersionPolicy[] = "latest";
inline constexpr int kMaxBatch = 8;
inline constexpr int kMaxQueueDelayMs = 5;
// Requests in the server at once (decoding, waiting for the backbone or in
// PriMaPs).
inline constexpr int kMaxQueue = 64;
// Of those, images waiting for the backbone: four full batches, so that a
// burst cannot queue more forward passes than it is worth waiting for.
inline constexpr int kMaxBackboneQueue = 4 * kMaxBatch;
inline constexpr int kResize = 320;
inline constexpr int kMaxResize = 2048;
// Patch tokens per image: 16384 holds a 1024x1024 center crop at patch 8,
// and a 2048x1024 street scene processed whole at resize 640 (12800).
inline constexpr int64_t kMaxTokens = 16384;
// Pixels for a CRF at the original resolution (its buffers are about
// 4 x channels floats per pixel).
inline constexpr int64_t kMaxCrfPixels = int64_t{2048} * 1024;
inline constexpr int64_t kLargeRequestTokens = 4096;
inline constexpr int64_t kMaxImagePixels = int64_t{8192} * 8192;
inline constexpr int kMaxMessageBytes = 64 << 20;

}  // namespace server_defaults
}  // namespace primaps

#endif  // PRIMAPS_SERVER_SERVER_DEFAULTS_H_
