// Assembles a running primaps-server from a ServerConfig: backbone, model
// registry, batcher, CPU pool, pipeline, gRPC services (PriMaPsService,
// AdminService, health, reflection) and metrics.
#ifndef PRIMAPS_SERVER_SERVER_H_
#define PRIMAPS_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "primaps/v1/config.pb.h"

namespace primaps {

// Defaults for every field a config file and the flags may leave unset.
v1::ServerConfig DefaultServerConfig();

// Parses a text-format ServerConfig file over `config`.
absl::Status MergeServerConfigFile(const std::string& path,
                                   v1::ServerConfig* config);

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      const v1::ServerConfig& config);
  ~Server();

  // The bound gRPC port (useful with port 0).
  int port() const;
  // The bound metrics port, or 0 without metrics.
  int metrics_port() const;
  // The bound HTTP API port, or 0 without --http_listen.
  int http_port() const;

  // Health NOT_SERVING; keep serving for `grace` so that load balancers and
  // readiness probes see it and stop sending calls; then stop accepting
  // calls and wait up to `timeout` for in-flight ones. Idempotent.
  void Drain(absl::Duration timeout,
             absl::Duration grace = absl::ZeroDuration());
  // Blocks until Drain has been called.
  void Wait();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_SERVER_H_
