// An HTTP server on cpp-httplib, for /metrics and for the HTTP/JSON API and
// web page (server/http_api.h).
//
// Every open connection holds one of `workers` threads, so requests are
// answered at once even with dozens of idle or slow connections open
// (server_integration_test MetricsStayFastWithIdleConnections,
// http_api_test SlowAndIdleConnectionsDelayNobody); a connection that
// sends nothing is closed after request_timeout_ms. (CivetWeb, which
// prometheus-cpp's Exposer uses, cannot start its worker threads in this
// process: their fixed small stacks do not hold LibTorch's static
// thread-local storage.)
#ifndef PRIMAPS_SERVER_HTTP_SERVER_H_
#define PRIMAPS_SERVER_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace primaps {

class HttpServer {
 public:
  struct Options {
    int workers = 64;
    int request_timeout_ms = 5000;
    // Bodies over this are refused (413) from their Content-Length, before
    // they are read.
    size_t max_body_bytes = 1 << 20;
    // Connections that may send several requests. 1: each request gets a
    // fresh connection, so an idle keep-alive connection never holds a
    // worker.
    int keep_alive_max_count = 1;
  };

  // Listens on `address` ("host:port"; port 0 picks a free one), with the
  // routes that `add_routes` registers; other paths get 404.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const std::string& address, const Options& options,
      const std::function<void(httplib::Server&)>& add_routes);
  // Stops listening and waits for the handlers in progress.
  ~HttpServer();

  int port() const { return port_; }

 private:
  HttpServer() = default;

  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

// An HTTP server answering GET /metrics with render() (Prometheus text
// format).
absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsHttpServer(
    const std::string& address, std::function<std::string()> render);

// Adds GET /metrics, answered with render(), to `http`.
void AddMetricsRoute(httplib::Server& http,
                     std::function<std::string()> render);

}  // namespace primaps

#endif  // PRIMAPS_SERVER_HTTP_SERVER_H_
