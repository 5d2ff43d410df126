#include "server/http_api.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <future>
#include <map>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "primaps/v1/service.pb.h"
#include "proto/option_names.h"
#include "server/inference_pipeline.h"
#include "server/model_registry.h"
#include "server/proto_convert.h"
#include "server/server_metrics.h"
#include "server/web_assets.h"

namespace primaps {
namespace {

using Params = std::multimap<std::string, std::string>;

struct Endpoint {
  const char* path;
  const char* method;  // the metrics' name, as for gRPC, with "HTTP " before
  Task task;
};

constexpr Endpoint kEndpoints[] = {
    {"/v1/propose", "HTTP ProposeMasks", Task::kProposeMasks},
    {"/v1/pseudo_label", "HTTP PseudoLabel", Task::kPseudoLabel},
    {"/v1/segment", "HTTP Segment", Task::kSegment},
};

// The query parameters every POST endpoint takes.
const std::set<std::string>& KnownParams() {
  static const auto* known = new std::set<std::string>{"request_id",
                                                       "resize",
                                                       "crop",
                                                       "threshold",
                                                       "crf",
                                                       "resize_filter",
                                                       "output_size",
                                                       "crf_resolution",
                                                       "min_head_version",
                                                       "soft_masks",
                                                       "probabilities",
                                                       "format",
                                                       "timeout_ms"};
  return *known;
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrCat("\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

void SendError(const absl::Status& status, httplib::Response& res) {
  res.status = HttpStatusFor(status.code());
  if (status.code() == absl::StatusCode::kResourceExhausted)
    res.set_header("Retry-After", "1");
  res.set_content(
      absl::StrCat(R"({"error":{"code":")",
                   absl::StatusCodeToString(status.code()), R"(","message":)",
                   JsonString(status.message()), "}}\n"),
      "application/json");
}

absl::Status BadParam(const std::string& name, const std::string& value,
                      const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat(
      "query parameter ", name, "=\"", value, "\": expected ", expected));
}

absl::StatusOr<bool> ParseBool(const std::string& name,
                               const std::string& value) {
  const std::string v = absl::AsciiStrToLower(value);
  if (v == "true" || v == "1" || v.empty()) return true;
  if (v == "false" || v == "0") return false;
  return BadParam(name, value, "true or false");
}

std::string QueryOption(const std::string& name) {
  return absl::StrCat("query parameter ", name);
}

struct HttpRequestOptions {
  v1::ImageRequest request;
  bool png_body = false;  // format=png: the label map itself
  absl::Duration timeout = absl::InfiniteDuration();
};

// The gRPC request the query describes (without the image).
absl::StatusOr<HttpRequestOptions> OptionsFromQuery(const Params& params) {
  HttpRequestOptions out;
  v1::ImageRequest& r = out.request;
  v1::Preprocess& p = *r.mutable_preprocess();
  r.set_png(true);
  for (const auto& [name, value] : params) {
    if (KnownParams().count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown query parameter \"", name,
                       "\"; known: ", absl::StrJoin(KnownParams(), ", ")));
    }
    if (name == "request_id") {
      r.set_request_id(value);
    } else if (name == "resize") {
      uint32_t resize = 0;
      if (!absl::SimpleAtoi(value, &resize))
        return BadParam(name, value, "a non-negative integer");
      p.set_resize(resize);
    } else if (name == "crop") {
      ASSIGN_OR_RETURN(const v1::CropMode crop,
                       ParseCropMode(QueryOption(name), value));
      p.set_crop(crop);
    } else if (name == "threshold") {
      float threshold = 0;
      if (!absl::SimpleAtof(value, &threshold))
        return BadParam(name, value, "a number in [0, 1]");
      p.set_threshold(threshold);
    } else if (name == "crf") {
      ASSIGN_OR_RETURN(const bool crf, ParseBool(name, value));
      p.set_crf(crf);
    } else if (name == "resize_filter") {
      ASSIGN_OR_RETURN(const v1::ResizeFilter filter,
                       ParseResizeFilter(QueryOption(name), value));
      p.set_resize_filter(filter);
    } else if (name == "output_size") {
      ASSIGN_OR_RETURN(const v1::OutputSize size,
                       ParseOutputSize(QueryOption(name), value));
      p.set_output_size(size);
    } else if (name == "crf_resolution") {
      ASSIGN_OR_RETURN(const v1::CrfResolution resolution,
                       ParseCrfResolution(QueryOption(name), value));
      p.set_crf_resolution(resolution);
    } else if (name == "min_head_version") {
      uint64_t version = 0;
      if (!absl::SimpleAtoi(value, &version))
        return BadParam(name, value, "a non-negative integer");
      r.set_min_head_version(version);
    } else if (name == "soft_masks") {
      ASSIGN_OR_RETURN(const bool soft, ParseBool(name, value));
      r.set_soft_masks(soft);
    } else if (name == "probabilities") {
      ASSIGN_OR_RETURN(const bool probabilities, ParseBool(name, value));
      r.set_probabilities(probabilities);
    } else if (name == "format") {
      if (value != "json" && value != "png")
        return BadParam(name, value, "json or png");
      out.png_body = value == "png";
    } else if (name == "timeout_ms") {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(value, &ms) || ms <= 0)
        return BadParam(name, value, "a positive number of milliseconds");
      out.timeout = absl::Milliseconds(ms);
    }
  }
  return out;
}

// The image bytes: the multipart field "image", or the whole body (whatever
// its Content-Type: read here rather than by httplib, which would parse a
// form-urlencoded body, curl's default, into parameters).
// Bodies over `max_bytes` are refused as they arrive: httplib checks the
// limit against Content-Length only, not for chunked bodies.
absl::StatusOr<std::string> ReadImage(const httplib::Request& req,
                                      const httplib::ContentReader& reader,
                                      size_t max_bytes, bool* too_large) {
  std::string image;
  size_t body_bytes = 0;
  auto count = [&](size_t size) {
    body_bytes += size;
    *too_large = body_bytes > max_bytes;
    return !*too_large;
  };
  bool read = false;
  if (req.is_multipart_form_data()) {
    bool in_image = false;
    bool found = false;
    read = reader(
        [&](const httplib::MultipartFormData& field) {
          in_image = field.name == "image" && !found;
          found = found || in_image;
          return true;
        },
        [&](const char* data, size_t size) {
          if (!count(size)) return false;
          if (in_image) image.append(data, size);
          return true;
        });
    if (read && !found) {
      return absl::InvalidArgumentError(
          "the multipart form has no field \"image\"");
    }
  } else {
    read = reader([&](const char* data, size_t size) {
      if (!count(size)) return false;
      image.append(data, size);
      return true;
    });
  }
  if (*too_large) {
    return absl::OutOfRangeError(absl::StrCat("the body is over the limit of ",
                                              max_bytes,
                                              " bytes (--max_message_bytes)"));
  }
  if (!read) {
    return absl::InvalidArgumentError(
        "the request body could not be read (cut short, or malformed "
        "multipart)");
  }
  if (image.empty()) {
    return absl::InvalidArgumentError(
        "the request has no image: send the image file as the body, or as "
        "the multipart form field \"image\"");
  }
  return image;
}

absl::StatusOr<PipelineResult> RunAndWait(InferencePipeline* pipeline,
                                          PipelineRequest request) {
  auto promise =
      std::make_shared<std::promise<absl::StatusOr<PipelineResult>>>();
  std::future<absl::StatusOr<PipelineResult>> future = promise->get_future();
  pipeline->Run(std::move(request),
                [promise](absl::StatusOr<PipelineResult> result) {
                  promise->set_value(std::move(result));
                });
  return future.get();
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Printing a valid message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json + "\n";
}

void SetModelHeaders(const v1::ModelInfo& model, httplib::Response& res) {
  res.set_header("X-PriMaPs-Backbone", model.backbone());
  res.set_header("X-PriMaPs-Head-Version",
                 std::to_string(model.head_version()));
  res.set_header("X-PriMaPs-Classes", std::to_string(model.classes()));
}

// The response message for `task`, as JSON or as its label map's PNG.
absl::Status Respond(Task task, const PipelineResult& result,
                     const HttpRequestOptions& options,
                     httplib::Response& res) {
  const v1::ImageRequest& request = options.request;
  std::unique_ptr<google::protobuf::Message> message;
  const v1::LabelMap* labels = nullptr;
  const v1::ModelInfo* model = nullptr;
  switch (task) {
    case Task::kProposeMasks: {
      auto proposals = std::make_unique<v1::MaskProposals>();
      RETURN_IF_ERROR(FillMaskProposals(result, request, proposals.get()));
      labels = &proposals->masks();
      model = &proposals->model();
      res.set_header("X-PriMaPs-Mask-Count",
                     std::to_string(proposals->mask_count()));
      message = std::move(proposals);
      break;
    }
    case Task::kPseudoLabel: {
      auto pseudo = std::make_unique<v1::PseudoLabelResponse>();
      RETURN_IF_ERROR(FillPseudoLabel(result, request, pseudo.get()));
      labels = &pseudo->labels();
      model = &pseudo->model();
      res.set_header("X-PriMaPs-Mask-Count",
                     std::to_string(pseudo->mask_count()));
      message = std::move(pseudo);
      break;
    }
    case Task::kSegment: {
      auto segmentation = std::make_unique<v1::Segmentation>();
      RETURN_IF_ERROR(FillSegmentation(result, request, segmentation.get()));
      labels = &segmentation->labels();
      model = &segmentation->model();
      message = std::move(segmentation);
      break;
    }
    case Task::kFeatures:
      return absl::InternalError("features are not served over HTTP");
  }
  SetModelHeaders(*model, res);
  if (options.png_body) {
    res.set_content(labels->png(), "image/png");
  } else {
    res.set_content(ToJson(*message), "application/json");
  }
  return absl::OkStatus();
}

void AddImageEndpoint(httplib::Server& http, const Endpoint& endpoint,
                      size_t max_body_bytes, InferencePipeline* pipeline,
                      ServerMetrics* metrics) {
  http.Post(
      endpoint.path, [=](const httplib::Request& req, httplib::Response& res,
                         const httplib::ContentReader& reader) {
        const absl::Time start = absl::Now();
        bool too_large = false;
        const absl::Status status = [&]() -> absl::Status {
          ASSIGN_OR_RETURN(HttpRequestOptions options,
                           OptionsFromQuery(req.params));
          if (req.get_header_value("Accept") == "image/png")
            options.png_body = true;
          ASSIGN_OR_RETURN(*options.request.mutable_image()->mutable_encoded(),
                           ReadImage(req, reader, max_body_bytes, &too_large));
          ASSIGN_OR_RETURN(PipelineRequest request,
                           ToPipelineRequest(endpoint.task, options.request));
          // The pipeline has its own copy; free the request's.
          options.request.clear_image();
          request.deadline = start + options.timeout;
          ASSIGN_OR_RETURN(const PipelineResult result,
                           RunAndWait(pipeline, std::move(request)));
          const absl::Time encode_start = absl::Now();
          const absl::Status responded =
              Respond(endpoint.task, result, options, res);
          metrics->RecordStage("encode", absl::Now() - encode_start);
          return responded;
        }();
        if (!status.ok()) {
          SendError(status, res);
          if (too_large) res.status = 413;
        }
        const absl::Duration took = absl::Now() - start;
        res.set_header("X-PriMaPs-Time-Ms",
                       absl::StrCat(absl::ToDoubleMilliseconds(took)));
        metrics->RecordRequest(endpoint.method,
                               absl::StatusCodeToString(status.code()), took);
      });
}

void AddWebPage(httplib::Server& http) {
  for (const WebAsset* asset = WebAssets(); asset->path != nullptr; ++asset) {
    auto serve = [asset](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(asset->body), asset->content_type);
    };
    http.Get(asset->path, serve);
    if (std::string(asset->path) == "/index.html") http.Get("/", serve);
  }
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 412;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartHttpApi(
    const HttpApiOptions& options, InferencePipeline* pipeline,
    ModelRegistry* registry, ServerMetrics* metrics,
    std::function<bool()> ready) {
  HttpServer::Options http_options;
  http_options.workers = options.workers;
  http_options.request_timeout_ms = options.request_timeout_ms;
  http_options.max_body_bytes = options.max_body_bytes;
  return HttpServer::Start(
      options.listen, http_options, [&](httplib::Server& http) {
        for (const Endpoint& endpoint : kEndpoints)
          AddImageEndpoint(http, endpoint, options.max_body_bytes, pipeline,
                           metrics);
        http.Get("/v1/model",
                 [registry](const httplib::Request&, httplib::Response& res) {
                   v1::ModelInfo info;
                   FillModelInfo(*registry->Current(), &info);
                   res.set_content(ToJson(info), "application/json");
                 });
        http.Get("/healthz",
                 [](const httplib::Request&, httplib::Response& res) {
                   res.set_content("ok\n", "text/plain");
                 });
        http.Get("/readyz", [ready](const httplib::Request&,
                                    httplib::Response& res) {
          const bool is_ready = ready();
          res.status = is_ready ? 200 : 503;
          res.set_content(is_ready ? "ready\n" : "not ready\n", "text/plain");
        });
        AddMetricsRoute(http, [metrics] { return metrics->Render(); });
        AddWebPage(http);
        // Paths and methods that match nothing, and bodies httplib refuses
        // itself, answer the same JSON error as everything else.
        http.set_error_handler([max = options.max_body_bytes](
                                   const httplib::Request& req,
                                   httplib::Response& res) {
          if (!res.body.empty()) return;
          const int status = res.status;
          if (status == 404) {
            SendError(absl::NotFoundError(
                          absl::StrCat("no ", req.method, " ", req.path,
                                       " here; see /v1/model, /v1/propose, "
                                       "/v1/pseudo_label, /v1/segment")),
                      res);
          } else if (status == 413) {
            SendError(absl::OutOfRangeError(
                          absl::StrCat("the body is over the limit of ", max,
                                       " bytes (--max_message_bytes)")),
                      res);
          } else {
            SendError(absl::InvalidArgumentError(absl::StrCat(
                          "HTTP ", status, " for ", req.method, " ", req.path)),
                      res);
          }
          res.status = status;  // SendError's mapping would say 400 for 413
        });
      });
}

}  // namespace primaps
