// AdminService: head checkpoints in and out of the registry, behind a
// bearer token.
#ifndef PRIMAPS_SERVER_ADMIN_SERVICE_H_
#define PRIMAPS_SERVER_ADMIN_SERVICE_H_

#include <string>

#include "base/thread_pool.h"
#include "primaps/v1/admin.grpc.pb.h"
#include "server/model_registry.h"
#include "server/server_metrics.h"

namespace primaps {

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  // `token` is what "authorization: Bearer <token>" must carry; it is never
  // logged. Checkpoints are read, parsed and validated on `pool`, never on
  // gRPC's callback threads. The registry and the pool must outlive the
  // service.
  AdminServiceImpl(ModelRegistry* registry, std::string token,
                   ServerMetrics* metrics, ThreadPool* pool);

  grpc::ServerUnaryReactor* LoadCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::LoadCheckpointRequest* request,
      v1::LoadCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* GetModelStatus(
      grpc::CallbackServerContext* context,
      const v1::GetModelStatusRequest* request,
      v1::ModelStatus* response) override;
  grpc::ServerUnaryReactor* Rollback(grpc::CallbackServerContext* context,
                                     const v1::RollbackRequest* request,
                                     v1::RollbackResponse* response) override;
  grpc::ServerUnaryReactor* GetCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::GetCheckpointRequest* request,
      v1::GetCheckpointResponse* response) override;

 private:
  // UNAUTHENTICATED without a bearer token, PERMISSION_DENIED with a wrong
  // one.
  absl::Status Authorize(const grpc::CallbackServerContext* context) const;
  grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context,
                                    const char* method,
                                    const absl::Status& status);

  ModelRegistry* const registry_;
  const std::string token_;
  ServerMetrics* const metrics_;
  ThreadPool* const pool_;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_ADMIN_SERVICE_H_
