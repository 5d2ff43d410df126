// Prometheus metrics of the server, exported on their own port.
#ifndef PRIMAPS_SERVER_SERVER_METRICS_H_
#define PRIMAPS_SERVER_SERVER_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace primaps {

class ServerMetrics {
 public:
  // Values read when Prometheus scrapes.
  struct LiveValues {
    std::function<int()> queue_depth;
    std::function<uint64_t()> model_version;
    std::function<uint64_t()> swaps;
    std::function<uint64_t()> refused_swaps;
    // Calls whose state the server still holds; returns to 0 when idle
    // (a leak shows as a value that never does).
    std::function<int64_t()> active_calls;
    // Model repository versions refused (never retried).
    std::function<uint64_t()> repository_refused;
    // The backbone and the precision of its forward pass, exported as the
    // labels of primaps_backbone_info (value 1).
    std::string backbone;
    std::string precision;
  };

  // Serves /metrics on `listen` ("host:port"); empty = metrics are kept
  // but not served.
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Create(
      const std::string& listen, LiveValues live);
  // Stops serving /metrics before the metrics go away.
  ~ServerMetrics();

  // One finished RPC (per image for streams).
  void RecordRequest(const std::string& method, const std::string& code,
                     absl::Duration latency);
  // One backbone batch.
  void RecordBatch(int size, absl::Duration queued, absl::Duration compute);
  // Time in one stage of a request: decode, preprocess, queue, forward
  // (per batch), proposals, labels (upsampling, CRF, argmax), head, encode.
  void RecordStage(const std::string& stage, absl::Duration duration);
  // A PriMaPs decomposition ended by --max_masks before 95% coverage.
  void RecordMaskCapHit();

  // The bound metrics port, or 0 when not serving.
  int listening_port() const;

  // The exposition text, as /metrics serves it.
  std::string Render() const;

 private:
  struct Impl;
  explicit ServerMetrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_SERVER_METRICS_H_
