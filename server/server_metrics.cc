#include "server/server_metrics.h"

#include <malloc.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/http_server.h"

namespace primaps {
namespace {

const prometheus::Histogram::BucketBoundaries kLatencyBuckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
const prometheus::Histogram::BucketBoundaries kBatchBuckets = {1,  2,  4, 8,
                                                               16, 32, 64};

double ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) *
         static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// Bytes the program holds from malloc: what a leak grows. The resident size
// also counts freed pages glibc keeps in its arenas for reuse, which move by
// tens of MB with the mix of threads that last allocated.
double HeapInUseBytes() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd);
}

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help,
                               double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric metric;
  metric.gauge.value = value;
  family.metric.push_back(metric);
  return family;
}

prometheus::MetricFamily Counter(const std::string& name,
                                 const std::string& help, double value) {
  prometheus::MetricFamily family = Gauge(name, help, 0);
  family.type = prometheus::MetricType::Counter;
  family.metric[0].counter.value = value;
  return family;
}

double CpuSeconds() {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Values that are read at scrape time rather than pushed.
class LiveCollector : public prometheus::Collectable {
 public:
  explicit LiveCollector(ServerMetrics::LiveValues live)
      : live_(std::move(live)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Gauge("primaps_queue_depth",
                        "Images waiting for the backbone.",
                        live_.queue_depth ? live_.queue_depth() : 0));
    out.push_back(Gauge(
        "primaps_model_version", "Version of the serving head (0 = none).",
        live_.model_version ? static_cast<double>(live_.model_version()) : 0));
    out.push_back(
        Counter("primaps_checkpoint_swaps_total", "Head checkpoints published.",
                live_.swaps ? static_cast<double>(live_.swaps()) : 0));
    out.push_back(Counter(
        "primaps_checkpoint_refused_total", "Head checkpoints refused.",
        live_.refused_swaps ? static_cast<double>(live_.refused_swaps()) : 0));
    out.push_back(Gauge(
        "primaps_active_calls", "Calls whose state the server still holds.",
        live_.active_calls ? static_cast<double>(live_.active_calls()) : 0));
    out.push_back(
        Counter("primaps_repository_refused_total",
                "Model repository versions refused (truncated, NaN, another "
                "backbone's).",
                live_.repository_refused
                    ? static_cast<double>(live_.repository_refused())
                    : 0));
    prometheus::MetricFamily info =
        Gauge("primaps_backbone_info",
              "The backbone served and its precision (labels); always 1.", 1);
    info.metric[0].label = {{"backbone", live_.backbone},
                            {"precision", live_.precision}};
    out.push_back(std::move(info));
    out.push_back(Gauge("primaps_process_resident_memory_bytes",
                        "Resident memory of the server.", ResidentBytes()));
    out.push_back(Gauge("primaps_process_heap_in_use_bytes",
                        "Heap memory the server holds (malloc's in-use bytes, "
                        "without freed pages kept for reuse).",
                        HeapInUseBytes()));
    out.push_back(Counter("primaps_process_cpu_seconds_total",
                          "CPU time of the server, user and system.",
                          CpuSeconds()));
    return out;
  }

 private:
  ServerMetrics::LiveValues live_;
};

}  // namespace

struct ServerMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry =
      std::make_shared<prometheus::Registry>();
  std::shared_ptr<LiveCollector> live;
  std::unique_ptr<HttpServer> http;
  prometheus::Family<prometheus::Counter>* requests = nullptr;
  prometheus::Family<prometheus::Histogram>* latency = nullptr;
  prometheus::Histogram* queue = nullptr;
  prometheus::Histogram* compute = nullptr;
  prometheus::Histogram* batch = nullptr;
  prometheus::Family<prometheus::Histogram>* stages = nullptr;
  prometheus::Counter* mask_cap_hits = nullptr;
};

ServerMetrics::ServerMetrics(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
ServerMetrics::~ServerMetrics() = default;

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Create(
    const std::string& listen, LiveValues live) {
  auto impl = std::make_unique<Impl>();
  prometheus::Registry& r = *impl->registry;
  impl->requests = &prometheus::BuildCounter()
                        .Name("primaps_requests_total")
                        .Help(
                            "Finished requests by method and gRPC status code "
                            "(streams count images).")
                        .Register(r);
  impl->latency = &prometheus::BuildHistogram()
                       .Name("primaps_request_latency_seconds")
                       .Help("Time from request to response, by method.")
                       .Register(r);
  impl->queue =
      &prometheus::BuildHistogram()
           .Name("primaps_queue_seconds")
           .Help("Time a batch's oldest image waited for the backbone.")
           .Register(r)
           .Add({}, kLatencyBuckets);
  impl->compute = &prometheus::BuildHistogram()
                       .Name("primaps_compute_seconds")
                       .Help("Backbone forward time per batch.")
                       .Register(r)
                       .Add({}, kLatencyBuckets);
  impl->batch = &prometheus::BuildHistogram()
                     .Name("primaps_batch_size")
                     .Help("Images per backbone batch.")
                     .Register(r)
                     .Add({}, kBatchBuckets);
  impl->stages = &prometheus::BuildHistogram()
                      .Name("primaps_stage_seconds")
                      .Help(
                          "Time in each stage of a request (queue and "
                          "forward: per backbone batch).")
                      .Register(r);
  impl->mask_cap_hits =
      &prometheus::BuildCounter()
           .Name("primaps_mask_cap_hits_total")
           .Help(
               "PriMaPs decompositions that --max_masks ended before 95% "
               "coverage.")
           .Register(r)
           .Add({});
  impl->live = std::make_shared<LiveCollector>(std::move(live));
  auto metrics =
      std::unique_ptr<ServerMetrics>(new ServerMetrics(std::move(impl)));
  if (!listen.empty()) {
    ServerMetrics* raw = metrics.get();
    auto http = StartMetricsHttpServer(listen, [raw] { return raw->Render(); });
    if (!http.ok()) return http.status();
    metrics->impl_->http = *std::move(http);
  }
  return metrics;
}

void ServerMetrics::RecordRequest(const std::string& method,
                                  const std::string& code,
                                  absl::Duration latency) {
  impl_->requests->Add({{"method", method}, {"code", code}}).Increment();
  impl_->latency->Add({{"method", method}}, kLatencyBuckets)
      .Observe(absl::ToDoubleSeconds(latency));
}

void ServerMetrics::RecordMaskCapHit() { impl_->mask_cap_hits->Increment(); }

void ServerMetrics::RecordBatch(int size, absl::Duration queued,
                                absl::Duration compute) {
  impl_->batch->Observe(size);
  impl_->queue->Observe(absl::ToDoubleSeconds(queued));
  impl_->compute->Observe(absl::ToDoubleSeconds(compute));
}

void ServerMetrics::RecordStage(const std::string& stage,
                                absl::Duration duration) {
  impl_->stages->Add({{"stage", stage}}, kLatencyBuckets)
      .Observe(absl::ToDoubleSeconds(duration));
}

int ServerMetrics::listening_port() const {
  return impl_->http ? impl_->http->port() : 0;
}

std::string ServerMetrics::Render() const {
  std::vector<prometheus::MetricFamily> families = impl_->registry->Collect();
  for (auto& f : impl_->live->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace primaps
