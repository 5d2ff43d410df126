#include "server/server.h"

#include <google/protobuf/text_format.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>

#include <cstdio>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "engine/backbone/backbone_weights.h"
#include "engine/backbone/builtin_backbone.h"
#include "engine/checkpoint/pth_reader.h"
#include "engine/projected_backbone.h"
#include "engine/reference_checkpoint.h"
#include "engine/segmentation_head.h"
#include "engine/stego_checkpoint.h"
#include "engine/vit/vit_backbone.h"
#include "proto/option_names.h"
#include "server/admin_service.h"
#include "server/dynamic_batcher.h"
#include "server/http_api.h"
#include "server/inference_pipeline.h"
#include "server/model_registry.h"
#include "server/primaps_service.h"
#include "server/proto_convert.h"
#include "server/repository_follower.h"
#include "server/server_defaults.h"
#include "server/server_metrics.h"

namespace primaps {

v1::ServerConfig DefaultServerConfig() {
  namespace d = server_defaults;
  v1::ServerConfig c;
  c.set_listen(d::kListen);
  c.set_metrics_listen(d::kMetricsListen);
  c.set_http_listen(d::kHttpListen);
  c.set_backbone(d::kBackbone);
  c.set_device(d::kDevice);
  c.set_precision(d::kPrecision);
  c.set_threads(d::kThreads);
  c.set_poll_interval_s(d::kPollIntervalS);
  c.set_version_policy(d::kVersionPolicy);
  c.set_cpu_threads(
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  c.set_max_batch(d::kMaxBatch);
  c.set_max_queue_delay_ms(d::kMaxQueueDelayMs);
  c.set_max_queue(d::kMaxQueue);
  c.set_max_backbone_queue(d::kMaxBackboneQueue);
  c.set_resize(d::kResize);
  c.set_crop("center");
  c.set_threshold(PriMaPsOptions{}.threshold);
  c.set_max_masks(PriMaPsOptions{}.max_masks);
  c.set_output_size("processed");
  c.set_crf_resolution("processed");
  c.set_max_tokens(d::kMaxTokens);
  c.set_max_crf_pixels(d::kMaxCrfPixels);
  // Half the cores for large work, so small requests always find a worker.
  c.set_max_large_in_flight(std::max(1, c.cpu_threads() / 2));
  c.set_large_request_tokens(d::kLargeRequestTokens);
  c.set_max_image_pixels(d::kMaxImagePixels);
  c.set_max_message_bytes(d::kMaxMessageBytes);
  return c;
}

absl::Status MergeServerConfigFile(const std::string& path,
                                   v1::ServerConfig* config) {
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path, 1 << 20));
  if (!google::protobuf::TextFormat::MergeFromString(text, config)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, " is not a text-format ServerConfig"));
  }
  return absl::OkStatus();
}

struct Server::Impl {
  v1::ServerConfig config;
  std::unique_ptr<Backbone> backbone;
  std::unique_ptr<ModelRegistry> registry;
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<ThreadPool> cpu_pool;
  std::unique_ptr<DynamicBatcher> batcher;
  std::unique_ptr<InferencePipeline> pipeline;
  std::unique_ptr<PriMaPsServiceImpl> service;
  std::unique_ptr<AdminServiceImpl> admin;
  std::unique_ptr<RepositoryFollower> follower;  // with --model_repository
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<HttpServer> http;  // with --http_listen
  int port = 0;
  absl::Mutex drain_mu;
  bool drained ABSL_GUARDED_BY(drain_mu) = false;
  // What the health service says (and /readyz).
  std::atomic<bool> serving{false};

  void SetServing(bool serving_now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(drain_mu) {
    serving = serving_now;
    server->GetHealthCheckService()->SetServingStatus(serving_now);
  }
  absl::Notification drained_notification;
};

namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
    const v1::ServerConfig& c) {
  if (c.tls_cert().empty() && c.tls_key().empty()) {
    if (!c.tls_client_ca().empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (c.tls_cert().empty() || c.tls_key().empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key");
  }
  grpc::SslServerCredentialsOptions options;
  ASSIGN_OR_RETURN(const std::string cert, ReadFile(c.tls_cert(), 1 << 20));
  ASSIGN_OR_RETURN(const std::string key, ReadFile(c.tls_key(), 1 << 20));
  options.pem_key_cert_pairs.push_back({key, cert});
  if (!c.tls_client_ca().empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs,
                     ReadFile(c.tls_client_ca(), 1 << 20));
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// The backbone, and the heads when --weights holds a whole model (the
// reference's train.py checkpoint, engine/reference_checkpoint.h).
struct LoadedModel {
  std::unique_ptr<Backbone> backbone;
  std::optional<SegmentationHead> head;
  // The block served, as the reference's dino_block; 0 for the built-in
  // backbone.
  int dino_block = 0;
  // The projection the heads read (STEGO's checkpoints); kind empty
  // without one.
  Projection projection;
};

absl::StatusOr<VitBackboneOptions> VitOptions(const v1::ServerConfig& c,
                                              const VitConfig& arch) {
  VitBackboneOptions options;
  options.config = arch;
  options.device = c.device();
  options.precision = c.precision();
  if (c.dino_block() > 0) {
    if (c.dino_block() > arch.depth) {
      return absl::InvalidArgumentError(
          absl::StrCat("--dino_block=", c.dino_block(), ": ", arch.name,
                       " has ", arch.depth, " blocks"));
    }
    options.block = BlockForDinoBlock(arch, c.dino_block());
  }
  return options;
}

// A whole model's file names its backbone: --backbone may be left out, and
// must agree when given.
absl::Status CheckNamedBackbone(const v1::ServerConfig& c,
                                const std::string& held) {
  if (c.backbone() == server_defaults::kBackbone || c.backbone() == held)
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--backbone=", c.backbone(), " but --weights ", c.weights(),
                   " holds ", held, "; leave --backbone out to serve it"));
}

// --weights as the reference's checkpoint: the backbone it names (refused
// when --backbone names another) and its heads.
absl::StatusOr<LoadedModel> LoadReferenceModel(const v1::ServerConfig& c,
                                               PthStateDict state) {
  auto model = ReadReferenceModel(std::move(state));
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--weights ", c.weights(), ": ", model.status().message()));
  }
  RETURN_IF_ERROR(CheckNamedBackbone(c, model->config.name));
  ASSIGN_OR_RETURN(VitBackboneOptions options, VitOptions(c, model->config));
  // Without --dino_block the heads read the block they were trained on.
  if (c.dino_block() == 0) options.block = model->block;
  SetTorchThreads(c.threads());
  LogInfo(absl::StrCat(
      "--weights is the reference's checkpoint: ", model->config.name,
      ", dino_block ", c.dino_block() > 0 ? c.dino_block() : model->dino_block,
      ", ", model->head.classes, " classes, theta_M from ",
      model->theta_m_from));
  LoadedModel loaded;
  ASSIGN_OR_RETURN(loaded.backbone,
                   CreateVitBackbone(model->backbone, options));
  loaded.head = std::move(model->head);
  loaded.dino_block = c.dino_block() > 0 ? c.dino_block() : model->dino_block;
  return loaded;
}

// --weights as STEGO's checkpoint: its ViT followed by its projection, and
// its cluster probe as the heads.
absl::StatusOr<LoadedModel> LoadStegoModel(const v1::ServerConfig& c,
                                           PthStateDict state) {
  auto model = ReadStegoModel(std::move(state), c.weights());
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--weights ", c.weights(), ": ", model.status().message()));
  }
  RETURN_IF_ERROR(CheckNamedBackbone(c, model->config.name));
  ASSIGN_OR_RETURN(const VitBackboneOptions options,
                   VitOptions(c, model->config));
  SetTorchThreads(c.threads());
  LogInfo(absl::StrCat("--weights is ",
                       model->projection.kind == "hp" ? "HP's" : "STEGO's",
                       " checkpoint: ", model->config.name, ", projection to ",
                       model->projection.out_dim, " channels, ",
                       model->head.classes, " clusters"));
  LoadedModel loaded;
  ASSIGN_OR_RETURN(std::unique_ptr<Backbone> vit,
                   CreateVitBackbone(model->backbone, options));
  loaded.projection = model->projection;
  loaded.backbone = std::make_unique<ProjectedBackbone>(
      std::move(vit), std::move(model->projection));
  loaded.head = std::move(model->head);
  loaded.dino_block = c.dino_block() > 0 ? c.dino_block() : 1;
  return loaded;
}

absl::StatusOr<LoadedModel> MakeBackbone(const v1::ServerConfig& c) {
  LoadedModel loaded;
  if (c.backbone() == "builtin" && c.weights().empty()) {
    if (c.precision() != "fp32" && c.precision() != "auto") {
      return absl::InvalidArgumentError(
          absl::StrCat("--precision=", c.precision(),
                       ": the built-in backbone computes in fp32"));
    }
    loaded.backbone = CreateBuiltinBackbone();
    return loaded;
  }
  if (c.weights().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--backbone=", c.backbone(),
        " needs --weights (an official .pth, a .safetensors file or the "
        "reference's .ckpt)"));
  }
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(c.weights()));
  std::optional<TensorMap> raw_pth;
  // A whole model (backbone and heads) in one Lightning checkpoint?
  if (absl::StartsWith(bytes, "PK\x03\x04")) {
    auto state = ReadPthStateDict(bytes);
    if (state.ok() && IsStegoCheckpoint(*state))
      return LoadStegoModel(c, *std::move(state));
    if (state.ok() && IsLightningModelCheckpoint(*state))
      return LoadReferenceModel(c, *std::move(state));
    if (!state.ok()) {
      // Truncated or corrupt: say so, whatever the file was meant to be.
      return absl::InvalidArgumentError(absl::StrCat(
          "--weights ", c.weights(), ": ", state.status().message()));
    }
    raw_pth = std::move(state->tensors);
  }
  if (c.backbone() == "builtin") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--weights ", c.weights(),
        " is no reference checkpoint (a whole model): name its backbone "
        "with --backbone (dino_vits8, ...); the built-in backbone needs no "
        "weights"));
  }
  ASSIGN_OR_RETURN(const VitConfig arch, VitConfigByName(c.backbone()));
  ASSIGN_OR_RETURN(const VitBackboneOptions options, VitOptions(c, arch));
  SetTorchThreads(c.threads());
  // A .pth is parsed already; anything else (safetensors) is parsed here.
  absl::StatusOr<TensorMap> raw =
      raw_pth.has_value() ? *std::move(raw_pth) : ParseWeights(bytes);
  if (!raw.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.weights(), ": ", raw.status().message()));
  }
  auto weights = CanonicalizeBackboneWeights(*std::move(raw), arch);
  if (!weights.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.weights(), ": ", weights.status().message()));
  }
  ASSIGN_OR_RETURN(loaded.backbone, CreateVitBackbone(*weights, options));
  loaded.dino_block = c.dino_block() > 0 ? c.dino_block() : 1;
  return loaded;
}

// An option that needs a value: its parse, refusing the empty name.
template <typename Enum>
absl::Status RequireChoice(const char* option,
                           const absl::StatusOr<Enum>& parsed) {
  RETURN_IF_ERROR(parsed.status());
  if (static_cast<int>(*parsed) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, " is empty; it needs a value"));
  }
  return absl::OkStatus();
}

// The settings Create takes as they are: choices and bounds.
absl::Status ValidateConfig(const v1::ServerConfig& c) {
  // The names come from the one table (proto/option_names.h); crop, output
  // size and CRF resolution need a value, the filter may be left empty (the
  // reference's per task).
  RETURN_IF_ERROR(RequireChoice("--crop", ParseCropMode("--crop", c.crop())));
  RETURN_IF_ERROR(
      ParseResizeFilter("--resize_filter", c.resize_filter()).status());
  RETURN_IF_ERROR(RequireChoice(
      "--output_size", ParseOutputSize("--output_size", c.output_size())));
  RETURN_IF_ERROR(RequireChoice(
      "--crf_resolution",
      ParseCrfResolution("--crf_resolution", c.crf_resolution())));
  if (!c.model_repository().empty()) {
    RETURN_IF_ERROR(ParseVersionPolicy(c.version_policy()).status());
    if (c.poll_interval_s() < 1) {
      return absl::InvalidArgumentError("--poll_interval_s must be >= 1");
    }
    if (!c.head().empty()) {
      return absl::InvalidArgumentError(
          "--head and --model_repository exclude each other: the repository "
          "says which head to serve");
    }
  }
  if (c.max_masks() < 1 || c.max_masks() > 254) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_masks is ", c.max_masks(), "; must be in [1, 254]"));
  }
  if (c.max_tokens() < 4 || c.max_crf_pixels() < 1) {
    return absl::InvalidArgumentError(
        "--max_tokens must be >= 4 (a 2x2 grid), --max_crf_pixels >= 1");
  }
  if (c.max_batch() < 1 || c.max_queue() < 1 || c.max_backbone_queue() < 1 ||
      c.max_queue_delay_ms() < 0) {
    return absl::InvalidArgumentError(
        "--max_batch, --max_queue and --max_backbone_queue must be >= 1, "
        "--max_queue_delay_ms >= 0");
  }
  return absl::OkStatus();
}

// The registry for the loaded backbone's heads, serving --head when given,
// else the heads that came with --weights.
absl::StatusOr<std::unique_ptr<ModelRegistry>> CreateRegistry(
    const v1::ServerConfig& c, const LoadedModel& model) {
  const Backbone& backbone = *model.backbone;
  const std::optional<SegmentationHead>& weights_head = model.head;
  ModelRegistry::Options options;
  options.backbone = backbone.id();
  options.precision = backbone.precision();
  options.feature_dim = backbone.head_dim();
  options.checkpoint_dir = c.checkpoint_dir();
  options.dino_block = model.dino_block;
  options.projection = model.projection.kind;
  options.projection_dim =
      model.projection.kind.empty() ? 0 : model.projection.out_dim;
  options.projection_source = model.projection.source;
  options.projection_digest = model.projection.digest;
  auto registry = std::make_unique<ModelRegistry>(options);
  if (c.head().empty() && weights_head.has_value()) {
    auto loaded = registry->LoadFromBytes(
        SerializeHeadCheckpoint(*weights_head), "--weights " + c.weights());
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--weights ", c.weights(), ": ", loaded.status().message()));
    }
    LogInfo(absl::StrCat("heads from --weights: ", (*loaded)->head->classes,
                         " classes, version ", (*loaded)->version));
    return registry;
  }
  if (c.head().empty()) return registry;
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(c.head(), 1 << 30));
  auto loaded = registry->LoadFromBytes(bytes, "--head " + c.head());
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--head ", c.head(), ": ", loaded.status().message()));
  }
  LogInfo(absl::StrCat("head loaded: ", (*loaded)->head->classes,
                       " classes, version ", (*loaded)->version));
  return registry;
}

// The follower of --model_repository, after its first poll, whose status
// goes to `first_poll` (a repository not readable yet is polled again
// later). `on_load` runs after each head it publishes.
absl::StatusOr<std::unique_ptr<RepositoryFollower>> FollowRepository(
    const v1::ServerConfig& c, ModelRegistry* registry,
    std::function<void()> on_load, absl::Status* first_poll) {
  RepositoryFollower::Options options;
  options.poll_interval = absl::Seconds(c.poll_interval_s());
  ASSIGN_OR_RETURN(options.policy, ParseVersionPolicy(c.version_policy()));
  options.log = [](const std::string& line) { LogInfo(line); };
  options.on_load = std::move(on_load);
  auto follower = std::make_unique<RepositoryFollower>(
      DirectoryModelSource(c.model_repository()), registry, options);
  *first_poll = follower->PollOnce();
  if (!first_poll->ok())
    LogInfo(absl::StrCat("model repository: ", first_poll->message()));
  return follower;
}

DynamicBatcher::Options BatcherOptionsFrom(const v1::ServerConfig& c) {
  DynamicBatcher::Options options;
  options.max_batch = c.max_batch();
  options.max_queue = c.max_backbone_queue();
  options.max_queue_delay = absl::Milliseconds(c.max_queue_delay_ms());
  return options;
}

absl::StatusOr<PipelineOptions> PipelineOptionsFrom(const v1::ServerConfig& c,
                                                    ServerMetrics* metrics) {
  PipelineOptions options;
  options.decode.max_pixels = c.max_image_pixels();
  options.default_resize = c.resize();
  options.max_in_flight = c.max_queue();
  options.primaps.threshold = c.threshold();
  options.primaps.max_masks = c.max_masks();
  options.max_tokens = c.max_tokens();
  options.max_crf_pixels = c.max_crf_pixels();
  options.max_large_in_flight = c.max_large_in_flight();
  options.large_request_tokens = c.large_request_tokens();
  // The names were validated; the table maps them (proto/option_names.h).
  ASSIGN_OR_RETURN(const v1::CropMode crop, ParseCropMode("--crop", c.crop()));
  ASSIGN_OR_RETURN(const std::optional<CropMode> default_crop, FromProto(crop));
  options.default_crop = default_crop.value_or(CropMode::kCenter);
  ASSIGN_OR_RETURN(const v1::OutputSize size,
                   ParseOutputSize("--output_size", c.output_size()));
  ASSIGN_OR_RETURN(const std::optional<OutputSize> default_size,
                   FromProto(size));
  options.default_output_size = default_size.value_or(OutputSize::kProcessed);
  ASSIGN_OR_RETURN(const v1::CrfResolution crf_at,
                   ParseCrfResolution("--crf_resolution", c.crf_resolution()));
  ASSIGN_OR_RETURN(const std::optional<CrfResolution> default_crf_at,
                   FromProto(crf_at));
  options.default_crf_resolution =
      default_crf_at.value_or(CrfResolution::kProcessed);
  ASSIGN_OR_RETURN(const v1::ResizeFilter filter,
                   ParseResizeFilter("--resize_filter", c.resize_filter()));
  ASSIGN_OR_RETURN(options.default_filter, FromProto(filter));
  options.on_stage = [metrics](const char* stage, absl::Duration duration) {
    metrics->RecordStage(stage, duration);
  };
  options.on_mask_cap = [metrics] { metrics->RecordMaskCapHit(); };
  return options;
}

// The gRPC server with the services (admin may be null), the health
// service and reflection, listening on --listen; `port` receives the port.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpc(
    const v1::ServerConfig& c, PriMaPsServiceImpl* service,
    AdminServiceImpl* admin, int* port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  ASSIGN_OR_RETURN(auto credentials, Credentials(c));
  builder.AddListeningPort(c.listen(), credentials, port);
  builder.SetMaxReceiveMessageSize(c.max_message_bytes());
  builder.SetMaxSendMessageSize(c.max_message_bytes());
  builder.RegisterService(service);
  if (admin != nullptr) builder.RegisterService(admin);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", c.listen()));
  }
  return server;
}

}  // namespace

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Drain(absl::Seconds(30));
  // Stop the batcher before the pool it hands work to, and both before the
  // models they use.
  impl_->batcher.reset();
  impl_->cpu_pool.reset();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(
    const v1::ServerConfig& config) {
  RETURN_IF_ERROR(ValidateConfig(config));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  const v1::ServerConfig& c = impl->config;
  LogInfo(
      c.backbone() == server_defaults::kBackbone && !c.weights().empty()
          ? absl::StrCat("loading the model in ", c.weights())
          : absl::StrCat("loading backbone ", c.backbone(),
                         c.weights().empty() ? "" : " from " + c.weights()));
  ASSIGN_OR_RETURN(LoadedModel loaded, MakeBackbone(c));
  ASSIGN_OR_RETURN(impl->registry, CreateRegistry(c, loaded));
  impl->backbone = std::move(loaded.backbone);
  ModelRegistry* registry = impl->registry.get();

  // Metrics read live values from parts created below.
  Impl* raw = impl.get();
  ServerMetrics::LiveValues live;
  live.backbone = impl->backbone->id();
  live.precision = impl->backbone->precision();
  live.queue_depth = [raw] {
    return raw->batcher ? raw->batcher->queue_depth() : 0;
  };
  live.model_version = [registry] { return registry->Current()->version; };
  live.swaps = [registry] { return registry->swaps(); };
  live.refused_swaps = [registry] { return registry->refused_swaps(); };
  live.active_calls = [raw] {
    return raw->service ? raw->service->active_calls() : 0;
  };
  live.repository_refused = [raw]() -> uint64_t {
    return raw->follower ? raw->follower->refused() : 0;
  };
  ASSIGN_OR_RETURN(impl->metrics,
                   ServerMetrics::Create(c.metrics_listen(), live));
  ServerMetrics* metrics = impl->metrics.get();

  impl->cpu_pool = std::make_unique<ThreadPool>(c.cpu_threads());
  impl->batcher = std::make_unique<DynamicBatcher>(
      BatcherOptionsFrom(c), impl->backbone.get(),
      [metrics](int size, absl::Duration queued, absl::Duration compute) {
        metrics->RecordBatch(size, queued, compute);
        metrics->RecordStage("queue", queued);
        metrics->RecordStage("forward", compute);
      });
  ASSIGN_OR_RETURN(PipelineOptions pipeline_options,
                   PipelineOptionsFrom(c, metrics));
  impl->pipeline = std::make_unique<InferencePipeline>(
      std::move(pipeline_options), impl->backbone.get(), registry,
      impl->batcher.get(), impl->cpu_pool.get());
  impl->service =
      std::make_unique<PriMaPsServiceImpl>(impl->pipeline.get(), metrics);
  if (!c.admin_token_file().empty()) {
    ASSIGN_OR_RETURN(std::string token, ReadTokenFile(c.admin_token_file()));
    impl->admin = std::make_unique<AdminServiceImpl>(
        registry, std::move(token), metrics, impl->cpu_pool.get());
  } else {
    LogInfo("no --admin_token_file: AdminService is disabled");
  }

  // Ready at once without a repository. With one, after its first poll
  // when that read it and the policy is latest (an empty repository has
  // no head to wait for); otherwise once a head is loaded (a pinned
  // version not there yet, a repository not mounted yet).
  bool ready = true;
  if (!c.model_repository().empty()) {
    absl::Status first_poll;
    ASSIGN_OR_RETURN(impl->follower,
                     FollowRepository(
                         c, registry,
                         [raw] {
                           absl::MutexLock lock(&raw->drain_mu);
                           if (raw->server != nullptr && !raw->drained)
                             raw->SetServing(true);
                         },
                         &first_poll));
    ready = registry->Current()->head != nullptr ||
            (first_poll.ok() && c.version_policy() == "latest");
  }

  // /readyz follows the health service's status (false until set below).
  if (!c.http_listen().empty()) {
    HttpApiOptions http;
    http.listen = c.http_listen();
    http.max_body_bytes = c.max_message_bytes();
    ASSIGN_OR_RETURN(impl->http,
                     StartHttpApi(http, impl->pipeline.get(), registry, metrics,
                                  [raw] { return raw->serving.load(); }));
  }
  ASSIGN_OR_RETURN(impl->server, StartGrpc(c, impl->service.get(),
                                           impl->admin.get(), &impl->port));
  // With a repository, ready only once it has given a head.
  {
    absl::MutexLock lock(&impl->drain_mu);
    impl->SetServing(ready || registry->Current()->head != nullptr);
  }

  if (impl->follower) impl->follower->Start();
  LogInfo(absl::StrCat("serving on port ", impl->port, ", metrics on port ",
                       impl->metrics->listening_port(), ", http on port ",
                       impl->http ? impl->http->port() : 0, " (backbone ",
                       impl->backbone->id(), " in ",
                       impl->backbone->precision(), ", head version ",
                       registry->Current()->version, ")"));
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port; }

int Server::metrics_port() const { return impl_->metrics->listening_port(); }

int Server::http_port() const { return impl_->http ? impl_->http->port() : 0; }

void Server::Drain(absl::Duration timeout, absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->drain_mu);
    if (impl_->drained) return;
    impl_->drained = true;
  }
  LogInfo("draining: no new calls, waiting for in-flight ones");
  {
    absl::MutexLock lock(&impl_->drain_mu);
    impl_->SetServing(false);
  }
  if (grace > absl::ZeroDuration()) {
    LogInfo(absl::StrCat("health is NOT_SERVING; still serving for ",
                         absl::FormatDuration(grace)));
    absl::SleepFor(grace);
  }
  // Open streams answer what they have read and end with UNAVAILABLE, so
  // that their clients resend the rest elsewhere; unary calls run to their
  // end. Shutdown cancels whatever is still running at the timeout.
  impl_->service->DrainStreams();
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + timeout));
  // Stops listening and waits for the HTTP requests in progress.
  impl_->http.reset();
  impl_->server->Wait();
  LogInfo(absl::StrCat("drained; ", impl_->service->active_calls(),
                       " calls still active"));
  impl_->drained_notification.Notify();
}

void Server::Wait() { impl_->drained_notification.WaitForNotification(); }

}  // namespace primaps
