#include "trainer/feature_source.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace primaps {

FeatureMap ToFeatureMap(const v1::FeatureResponse& r) {
  FeatureMap f{static_cast<int>(r.dim()),
               static_cast<int>(r.height()),
               static_cast<int>(r.width()),
               {}};
  f.data.resize(r.data().size() / 4);
  std::memcpy(f.data.data(), r.data().data(), f.data.size() * 4);
  return f;
}

// The backbone is the first server's, named in the answer to a small
// features request.
absl::StatusOr<TrainerOptions> ResolveFromServers(TrainerOptions o) {
  ClientOptions options;
  options.target = o.servers[0];
  options.retries = 8;
  ASSIGN_OR_RETURN(std::unique_ptr<PrimapsClient> client,
                   PrimapsClient::Create(options));
  v1::FeatureRequest request;
  v1::RawImage* raw = request.mutable_image()->mutable_raw();
  // 112: a multiple of every patch size (8, 14, 16).
  const std::string gray(112 * 112 * 3, '\x80');
  raw->set_width(112);
  raw->set_height(112);
  raw->set_channels(3);
  raw->set_pixels(gray);
  request.mutable_preprocess()->set_resize(112);
  auto response = client->ExtractFeatures(request);
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        absl::StrCat("asking ", o.servers[0], " its backbone: ",
                                     response.status().message()));
  }
  const std::string& backbone = response->model().backbone();
  if (o.resize == 0) {
    o.resize = absl::StartsWith(backbone, "dinov2") ? 322 : 320;
    LogInfo(absl::StrCat("crop and validation resize ", o.resize, " for ",
                         backbone));
  }
  o.heads_on_projection = !response->model().projection().empty();
  if (o.heads_on_projection) {
    // +SotA+PriMaPs: no PCA and no baseline; the heads start from the
    // served checkpoint's cluster probe.
    if (o.init_checkpoint.empty()) o.init_checkpoint = "served";
    LogInfo(absl::StrCat("the heads read ", backbone, "'s ",
                         response->model().projection(), " projection (",
                         response->model().projection_dim(),
                         " channels); PriMaPs reads the backbone's features"));
  }
  return o;
}

}  // namespace primaps
