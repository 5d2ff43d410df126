#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace primaps {

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const std::string& address, const Options& options,
    const std::function<void(httplib::Server&)>& add_routes) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP address \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  auto server = std::unique_ptr<HttpServer>(new HttpServer());
  server->http_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *server->http_;
  // One worker per open connection: idle or slow ones never hold up
  // others.
  http.new_task_queue = [workers = options.workers] {
    return new httplib::ThreadPool(workers);
  };
  http.set_keep_alive_max_count(options.keep_alive_max_count);
  http.set_keep_alive_timeout(options.request_timeout_ms / 1000);
  http.set_read_timeout(options.request_timeout_ms / 1000,
                        (options.request_timeout_ms % 1000) * 1000);
  http.set_payload_max_length(options.max_body_bytes);
  // httplib would read (and discard) an oversize body before answering 413;
  // refuse it from its header instead, before a byte of it is read.
  http.set_pre_routing_handler(
      [max = options.max_body_bytes](
          const httplib::Request& req,
          httplib::Response& res) -> httplib::Server::HandlerResponse {
        const std::string length = req.get_header_value("Content-Length");
        uint64_t bytes = 0;
        if (!length.empty() && absl::SimpleAtoi(length, &bytes) &&
            bytes > max) {
          res.status = 413;
          res.set_header("Connection", "close");
          res.set_content(
              absl::StrCat(R"({"error":{"code":"OUT_OF_RANGE","message":")",
                           "the body has ", bytes, " bytes; the limit is ", max,
                           " (--max_message_bytes)\"}}"),
              "application/json");
          return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
      });
  add_routes(http);
  server->port_ = port == 0 ? http.bind_to_any_port(host)
                            : (http.bind_to_port(host, port) ? port : -1);
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", address,
                                               " (in use, or not an address)"));
  }
  auto finished = std::make_shared<std::atomic<bool>>(false);
  server->thread_ = std::thread([raw = server.get(), finished] {
    raw->http_->listen_after_bind();
    *finished = true;
  });
  // httplib's stop() does nothing before the listening loop has begun, and
  // the loop would then never end: return only once it runs, so that the
  // destructor can always stop it (a server whose later start-up step fails
  // destroys this at once).
  while (!http.is_running() && !*finished)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!http.is_running()) {
    return absl::InternalError(
        absl::StrCat("HTTP on ", address, " stopped as it started"));
  }
  return server;
}

HttpServer::~HttpServer() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void AddMetricsRoute(httplib::Server& http,
                     std::function<std::string()> render) {
  http.Get("/metrics", [render = std::move(render)](const httplib::Request&,
                                                    httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsHttpServer(
    const std::string& address, std::function<std::string()> render) {
  return HttpServer::Start(
      address, HttpServer::Options{},
      [&](httplib::Server& http) { AddMetricsRoute(http, std::move(render)); });
}

}  // namespace primaps
