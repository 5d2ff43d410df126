// The HTTP endpoint for GET /metrics (Prometheus text format), on
// cpp-httplib.
//
// Every open connection holds one of kWorkers worker threads, so scrapes
// are answered at once even with dozens of idle or slow connections open
// (server_integration_test MetricsStayFastWithIdleConnections); a
// connection that sends nothing is closed after kRequestTimeoutMs.
// (CivetWeb, which prometheus-cpp's Exposer uses, cannot start its worker
// threads in this process: their fixed small stacks do not hold LibTorch's
// static thread-local storage.)
#ifndef PRIMAPS_SERVER_METRICS_HTTP_SERVER_H_
#define PRIMAPS_SERVER_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace primaps {

class MetricsHttpServer {
 public:
  static constexpr int kWorkers = 64;
  static constexpr int kRequestTimeoutMs = 5000;

  // Listens on `address` ("host:port"; port 0 picks a free one) and answers
  // GET /metrics with render(); other paths get 404.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::function<std::string()> render);
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;

  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_METRICS_HTTP_SERVER_H_
