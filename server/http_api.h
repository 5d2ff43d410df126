// The HTTP/JSON API and the web page, beside gRPC on --http_listen: the same
// pipeline, limits, admission control and metrics as PriMaPsService, for
// callers without a gRPC stack (docs/http_api.md, docs/openapi.yaml).
//
//   POST /v1/propose, /v1/pseudo_label, /v1/segment
//       The image as the body (any Content-Type) or as the multipart field
//       "image"; preprocessing in the query (resize, crop, threshold, crf,
//       resize_filter, output_size, crf_resolution, min_head_version, ...).
//       Answers the response message as JSON (label maps as base64 PNG), or
//       with format=png the label map itself and the model in headers.
//   GET /v1/model      the model served (ModelInfo as JSON)
//   GET /healthz       200 while the process serves HTTP
//   GET /readyz        200 when ready for traffic, 503 otherwise
//   GET /metrics       the Prometheus metrics (for the page's status tab)
//   GET /              the web page (server/web/, built into the binary)
//
// Errors answer {"error": {"code": "INVALID_ARGUMENT", "message": ...}}
// with the HTTP status of HttpStatusFor.
#ifndef PRIMAPS_SERVER_HTTP_API_H_
#define PRIMAPS_SERVER_HTTP_API_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/http_server.h"

namespace primaps {

class InferencePipeline;
class ModelRegistry;
class ServerMetrics;

struct HttpApiOptions {
  std::string listen;  // host:port; port 0 picks a free one
  // Request bodies over this are refused (413) before they are read.
  size_t max_body_bytes = 64 << 20;
  // Handler threads: each open connection holds one.
  int workers = 128;
  int request_timeout_ms = 5000;
};

// The HTTP status for a Status code: 400 for bad input, 412 for a failed
// precondition (no head, head too old), 429 when overloaded, 503 when
// unavailable, 504 past a deadline.
int HttpStatusFor(absl::StatusCode code);

// Starts the API. The pointers are borrowed and must outlive the server;
// `ready` says whether the server takes traffic (/readyz).
absl::StatusOr<std::unique_ptr<HttpServer>> StartHttpApi(
    const HttpApiOptions& options, InferencePipeline* pipeline,
    ModelRegistry* registry, ServerMetrics* metrics,
    std::function<bool()> ready);

}  // namespace primaps

#endif  // PRIMAPS_SERVER_HTTP_API_H_
