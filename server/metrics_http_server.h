// A minimal HTTP/1.0 server for GET /metrics (Prometheus text format).
//
// prometheus-cpp's Exposer (CivetWeb) could not start inside this process
// and cannot bind port 0; this needs neither. One thread accepts and
// answers scrapes one at a time, which is all a scraper needs.
#ifndef PRIMAPS_SERVER_METRICS_HTTP_SERVER_H_
#define PRIMAPS_SERVER_METRICS_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace primaps {

class MetricsHttpServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one) and answers
  // GET /metrics with render(); other paths get 404.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::function<std::string()> render);
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer(int fd, int port, std::function<std::string()> render);
  void Loop();

  const int fd_;
  const int port_;
  const std::function<std::string()> render_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_METRICS_HTTP_SERVER_H_
