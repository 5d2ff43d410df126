#include "client/load_generator.h"

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "client/label_call.h"
#include "client/primaps_client.h"

namespace primaps {

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& o) {
  const bool features_rpc = o.rpc == "features";
  absl::StatusOr<LabelMode> mode = LabelMode::kPropose;
  if (!features_rpc) mode = ParseLabelMode(o.rpc, "--rpc (or features)");
  if (!mode.ok()) return mode.status();
  if (o.concurrency < 1)
    return absl::InvalidArgumentError("--concurrency must be >= 1");
  absl::Mutex mu;
  std::vector<double> latencies_ms;
  LoadReport report;
  // One client (its own channel) per thread.
  std::vector<std::unique_ptr<PrimapsClient>> clients;
  for (int t = 0; t < o.concurrency; ++t) {
    ClientOptions options;
    options.target = o.server;
    options.retries = 0;  // measure what the server answers, not retries
    options.deadline = o.deadline;
    ASSIGN_OR_RETURN(clients.emplace_back(), PrimapsClient::Create(options));
  }
  const absl::Time start = absl::Now(), end = start + o.duration;
  std::vector<std::thread> threads;
  for (int t = 0; t < o.concurrency; ++t) {
    threads.emplace_back([&, t] {
      PrimapsClient* client = clients[t].get();
      v1::ImageRequest request;
      request.mutable_image()->set_encoded(o.image);
      request.mutable_preprocess()->set_resize(o.resize);
      v1::FeatureRequest features;
      features.mutable_image()->set_encoded(o.image);
      features.mutable_preprocess()->set_resize(o.resize);
      while (absl::Now() < end) {
        const absl::Time t0 = absl::Now();
        absl::Status status;
        if (features_rpc) {
          status = client->ExtractFeatures(features).status();
        } else {
          status = CallLabels(client, *mode, request).status();
        }
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
        absl::MutexLock lock(&mu);
        ++report.requests;
        ++report.codes[absl::StatusCodeToString(status.code())];
        latencies_ms.push_back(ms);
      }
    });
  }
  for (auto& t : threads) t.join();
  report.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty()
               ? 0
               : latencies_ms[std::min(
                     latencies_ms.size() - 1,
                     static_cast<size_t>(p * latencies_ms.size()))];
  };
  report.p50_ms = pct(0.5);
  report.p90_ms = pct(0.9);
  report.p99_ms = pct(0.99);
  report.max_ms = latencies_ms.empty() ? 0 : latencies_ms.back();
  report.ok_per_second = report.codes["OK"] / std::max(report.seconds, 1e-9);
  return report;
}

std::string FormatLoadReport(const LoadOptions& o, const LoadReport& r) {
  std::string codes;
  for (const auto& [code, count] : r.codes)
    absl::StrAppend(&codes, codes.empty() ? "" : ", ", code, " ", count);
  return absl::StrFormat(
      "%s x%d for %.1f s: %d requests (%s), %.2f OK/s, latency p50 %.1f ms, "
      "p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
      o.rpc, o.concurrency, r.seconds, r.requests, codes, r.ok_per_second,
      r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms);
}

}  // namespace primaps
