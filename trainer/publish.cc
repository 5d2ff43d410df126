#include "trainer/publish.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "client/primaps_client.h"
#include "engine/segmentation_head.h"
#include "server/model_repository.h"
#include "trainer/evaluation_json.h"

namespace primaps {
namespace fs = std::filesystem;

void Push(const TrainerOptions& o, const HeadTrainer& trainer) {
  v1::LoadCheckpointRequest request;
  request.set_data(SerializeHeadCheckpoint(trainer.Head()));
  for (size_t i = 0; i < o.servers.size(); ++i) {
    ClientOptions options;
    options.target = o.servers[i];
    options.admin_token = o.admin_token;
    auto client = PrimapsClient::Create(options);
    if (!client.ok()) {
      LogInfo(absl::StrCat("push to ", o.servers[i],
                           " failed: ", client.status().ToString()));
      continue;
    }
    auto response = (*client)->LoadCheckpoint(request);
    if (response.ok()) {
      LogInfo(absl::StrCat("pushed step ", trainer.step(), " to ", o.servers[i],
                           ": head version ",
                           response->model().head_version()));
    } else {
      LogInfo(absl::StrCat("push to ", o.servers[i],
                           " failed: ", response.status().ToString()));
    }
  }
}

namespace {

// theta_M's mIoU of the newest published version; nullopt when there is
// none or it was published without figures, an error naming the file when
// its evaluation.json is unreadable.
absl::StatusOr<std::optional<double>> LastPublishedMiou(
    const std::string& dir) {
  auto source = DirectoryModelSource(dir);
  auto versions = source->ListVersions();
  if (!versions.ok() || versions->empty()) return std::nullopt;
  const std::string path =
      absl::StrCat(source->Describe(versions->back()), "/evaluation.json");
  if (!std::filesystem::exists(path)) return std::nullopt;
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  ASSIGN_OR_RETURN(const double miou, ThetaMMiou(bytes, path));
  return miou;
}

}  // namespace

// Publishes the head into o.publish_dir with `evaluation` (may be null),
// unless the gate finds it worse than the last published version.
absl::Status Publish(const TrainerOptions& o, const HeadTrainer& trainer,
                     const nlohmann::json& evaluation) {
  if (o.publish_max_miou_drop >= 0 && evaluation.contains("theta_m")) {
    ASSIGN_OR_RETURN(const double miou,
                     ThetaMMiou(evaluation, "the evaluation to publish"));
    ASSIGN_OR_RETURN(const std::optional<double> last,
                     LastPublishedMiou(o.publish_dir));
    if (last && miou < *last - o.publish_max_miou_drop) {
      LogInfo(absl::StrFormat(
          "step %d not published: theta_M mIoU %.2f is more than %.2f below "
          "the last published %.2f",
          trainer.step(), miou, o.publish_max_miou_drop, *last));
      return absl::OkStatus();
    }
  }
  ASSIGN_OR_RETURN(
      const uint64_t version,
      PublishToDirectory(o.publish_dir, SerializeHeadCheckpoint(trainer.Head()),
                         evaluation.is_null() ? "" : evaluation.dump(2)));
  LogInfo(absl::StrCat("published step ", trainer.step(), " as version ",
                       version, " in ", o.publish_dir));
  return absl::OkStatus();
}

}  // namespace primaps
