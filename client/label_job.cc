#include "client/label_job.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "client/label_call.h"
#include "client/primaps_client.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"
#include "proto/option_names.h"

namespace primaps {
namespace fs = std::filesystem;
namespace {

bool IsImageName(const std::string& name) {
  const std::string ext =
      absl::AsciiStrToLower(fs::path(name).extension().string());
  for (const char* e :
       {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}) {
    if (ext == e) return true;
  }
  return false;
}

// The output name for an input's relative path: ".png" instead of its
// extension, and no leading "/" (absolute list entries).
std::string PngStem(absl::string_view relative) {
  return fs::path(std::string(absl::StripPrefix(relative, "/")))
      .replace_extension(".png")
      .string();
}

absl::Status WriteCreatingDirs(const std::string& path,
                               absl::string_view bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  return WriteFileAtomically(path, bytes);
}

// Appends one JSON line per image to the shard's manifest. Each line is one
// write() of a complete line, so a killed job leaves at most a partial last
// line, which readers skip.
class Manifest {
 public:
  explicit Manifest(const std::string& path)
      : file_(std::fopen(path.c_str(), "a")) {}
  ~Manifest() {
    if (file_ != nullptr) {
      std::fflush(file_);
      ::fsync(fileno(file_));
      std::fclose(file_);
    }
  }
  bool ok() const { return file_ != nullptr; }
  void Append(const nlohmann::json& entry) {
    const std::string line = entry.dump() + "\n";
    std::lock_guard<std::mutex> lock(mu_);
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fflush(file_);
  }

 private:
  // A pthread mutex, visible to ThreadSanitizer (Debian's Abseil is not
  // instrumented); the batch-job client is checked under TSan in CI.
  std::mutex mu_;
  FILE* file_;
};

std::string Eta(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const int s = static_cast<int>(seconds);
  return absl::StrCat(s / 3600, "h", (s / 60) % 60, "m", s % 60, "s");
}

}  // namespace

int ShardOf(const std::string& relative_path, int shard_count) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : relative_path) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int>(h % static_cast<uint64_t>(std::max(1, shard_count)));
}

bool IsCompletePng(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const std::streamoff size = in.tellg();
  if (size < 57) return false;  // signature + IHDR + IEND at the least
  std::string head(16, '\0'), tail(12, '\0');
  in.seekg(0);
  in.read(head.data(), 16);
  in.seekg(size - 12);
  in.read(tail.data(), 12);
  return head.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0 &&
         head.compare(12, 4, "IHDR") == 0 && tail.compare(4, 4, "IEND") == 0;
}

absl::StatusOr<std::vector<std::string>> ListShard(
    const LabelJobOptions& options, std::string* root) {
  std::vector<std::string> all;
  std::error_code ec;
  if (fs::is_directory(options.input, ec)) {
    *root = options.input;
    for (auto it = fs::recursive_directory_iterator(
             options.input, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec) &&
          IsImageName(it->path().filename().string())) {
        all.push_back(fs::relative(it->path(), options.input, ec).string());
      }
    }
  } else if (fs::is_regular_file(options.input, ec)) {
    *root = fs::path(options.input).parent_path().string();
    std::ifstream list(options.input);
    std::string line;
    while (std::getline(list, line)) {
      // Relative paths are relative to the list's directory; absolute ones
      // keep their full path (without the leading "/") under the output.
      const std::string path(absl::StripAsciiWhitespace(line));
      if (!path.empty() && path[0] != '#') all.push_back(path);
    }
  } else {
    return absl::NotFoundError(absl::StrCat(
        "input \"", options.input, "\" is neither a directory nor a file"));
  }
  std::vector<std::string> shard;
  for (const std::string& path : all) {
    if (ShardOf(path, options.shard_count) == options.shard_index)
      shard.push_back(path);
  }
  std::sort(shard.begin(), shard.end());
  return shard;
}

namespace {

// The reference layout's imgs/<stem>.png (the crop the pseudo labels
// describe) and, with ground truth, gts/<stem>.png cropped the same way
// (Pillow's nearest, as the reference's training transforms).
absl::Status WriteReferenceExtras(const LabelJobOptions& options,
                                  const std::string& rel, const RgbImage& crop,
                                  int resize) {
  const std::string stem = PngStem(rel);
  ASSIGN_OR_RETURN(const std::string image_png, EncodeRgbPng(crop));
  RETURN_IF_ERROR(WriteCreatingDirs(
      absl::StrCat(options.output, "/imgs/", stem), image_png));
  if (options.labels_dir.empty()) return absl::OkStatus();
  auto gt_png = ReadFile(absl::StrCat(options.labels_dir, "/", stem));
  if (!gt_png.ok()) return absl::OkStatus();  // an unlabelled image
  ASSIGN_OR_RETURN(const LabelMap gt, DecodeLabelPng(*gt_png));
  ASSIGN_OR_RETURN(
      const std::string cropped,
      EncodeLabelPng(ResizeAndCropLabels(gt, resize, CropMode::kCenter,
                                         LabelResize::kPillowNearest)));
  return WriteCreatingDirs(absl::StrCat(options.output, "/gts/", stem),
                           cropped);
}

}  // namespace

namespace {

// What the options decide once for the whole job.
struct JobPlan {
  LabelMode mode = LabelMode::kPropose;
  v1::OutputSize output_size = v1::OUTPUT_SIZE_ORIGINAL;
  bool reference = false;    // --layout=reference
  int reference_resize = 0;  // its training crop's short side
};

absl::StatusOr<JobPlan> PlanJob(const LabelJobOptions& options) {
  if (options.servers.empty())
    return absl::InvalidArgumentError("no servers (--server)");
  JobPlan plan;
  ASSIGN_OR_RETURN(const LabelMode requested_mode,
                   ParseLabelMode(options.mode, "--mode"));
  ASSIGN_OR_RETURN(plan.output_size,
                   ParseOutputSize("--output_size", options.output_size));
  if (options.layout != "mirror" && options.layout != "reference") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--layout is \"", options.layout, "\", expected mirror or reference"));
  }
  plan.reference = options.layout == "reference";
  if (plan.reference && plan.output_size == v1::OUTPUT_SIZE_ORIGINAL) {
    return absl::InvalidArgumentError(
        "--layout=reference holds images and labels at the training crop; "
        "--output_size=original does not apply");
  }
  if (plan.reference && requested_mode == LabelMode::kSegment) {
    return absl::InvalidArgumentError(
        "--layout=reference holds class-agnostic PriMaPs masks (as "
        "ProposeMasks gives them); --mode=segment does not apply");
  }
  if (options.shard_count < 1 || options.shard_index < 0 ||
      options.shard_index >= options.shard_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", options.shard_index, "/", options.shard_count,
                     " is out of range"));
  }
  // Labels a user trains on must cover each image: original by default.
  if (plan.output_size == v1::OUTPUT_SIZE_UNSPECIFIED)
    plan.output_size = v1::OUTPUT_SIZE_ORIGINAL;
  plan.reference_resize = options.resize > 0 ? options.resize : 320;
  // The reference layout holds class-agnostic PriMaPs masks, whatever head
  // the server has: always ProposeMasks.
  plan.mode = plan.reference ? LabelMode::kPropose : requested_mode;
  return plan;
}

// Creates the output directory and removes the temporary files of
// WriteFileAtomically a killed run can leave behind (never at an output
// name).
absl::Status PrepareOutputDir(const std::string& output) {
  std::error_code ec;
  fs::create_directories(output, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", output, ": ", ec.message()));
  }
  for (auto it = fs::recursive_directory_iterator(output, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) &&
        it->path().filename().string().find(".tmp.") != std::string::npos) {
      fs::remove(it->path(), ec);
    }
  }
  return absl::OkStatus();
}

struct JobCounters {
  std::atomic<int64_t> done{0}, skipped{0}, failed{0};
};

// Progress on its own thread until destroyed: a bar on a terminal, a log
// line every `log_every` otherwise.
class ProgressReporter {
 public:
  ProgressReporter(int64_t total, absl::Duration log_every,
                   const JobCounters* counters)
      : total_(total),
        log_every_(log_every),
        counters_(counters),
        thread_([this] { Run(); }) {}
  ~ProgressReporter() {
    finished_ = true;
    thread_.join();
  }

 private:
  void Run() {
    const bool tty = ::isatty(STDERR_FILENO);
    absl::Time last_line = absl::Now();
    while (!finished_) {
      absl::SleepFor(absl::Milliseconds(tty ? 300 : 200));
      const int64_t d = counters_->done, s = counters_->skipped,
                    f = counters_->failed;
      const double elapsed = absl::ToDoubleSeconds(absl::Now() - start_);
      const double rate = d / std::max(elapsed, 1e-9);
      const double eta = (total_ - d - s - f) / std::max(rate, 1e-9);
      const int64_t finished_count = d + s + f;
      if (tty) {
        const int width = 30;
        const int filled =
            total_ ? static_cast<int>(width * finished_count / total_) : width;
        std::fprintf(stderr,
                     "\r[%s%s] %lld/%lld  %.1f img/s  ETA %s  failed %lld ",
                     std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(),
                     static_cast<long long>(finished_count),
                     static_cast<long long>(total_), rate, Eta(eta).c_str(),
                     static_cast<long long>(f));
      } else if (absl::Now() - last_line >= log_every_) {
        last_line = absl::Now();
        std::fprintf(stderr,
                     "label: %lld/%lld done (%lld skipped, %lld failed), %.1f "
                     "img/s, ETA %s\n",
                     static_cast<long long>(finished_count),
                     static_cast<long long>(total_), static_cast<long long>(s),
                     static_cast<long long>(f), rate, Eta(eta).c_str());
      }
    }
    if (tty) std::fprintf(stderr, "\n");
  }

  const int64_t total_;
  const absl::Duration log_every_;
  const JobCounters* counters_;
  const absl::Time start_ = absl::Now();
  std::atomic<bool> finished_{false};
  std::thread thread_;  // last: starts once the members above are set
};

// The request for one input. The reference layout's crop is made here and
// sent as pixels (returned in `crop`), so that imgs/ holds exactly what the
// pseudo labels describe.
absl::StatusOr<v1::ImageRequest> BuildRequest(const JobPlan& plan,
                                              const LabelJobOptions& options,
                                              const std::string& rel,
                                              const std::string& bytes,
                                              RgbImage* crop) {
  v1::ImageRequest request;
  request.set_request_id(rel);
  if (!plan.reference) {
    request.mutable_image()->set_encoded(bytes);
    request.mutable_preprocess()->set_resize(options.resize);
    request.mutable_preprocess()->set_output_size(plan.output_size);
    return request;
  }
  ASSIGN_OR_RETURN(const RgbImage rgb, DecodeImage(bytes));
  *crop = ResizeAndCropAntialias(rgb, plan.reference_resize, CropMode::kCenter);
  v1::RawImage* raw = request.mutable_image()->mutable_raw();
  raw->set_width(crop->width);
  raw->set_height(crop->height);
  raw->set_channels(3);
  raw->set_pixels(crop->pixels.data(), crop->pixels.size());
  request.mutable_preprocess()->set_resize(plan.reference_resize);
  request.mutable_preprocess()->set_crop(v1::CROP_MODE_CENTER);
  return request;
}

// The manifest fields of a labelled image: the model and what the label
// map is aligned with.
void DescribeResult(const LabelCallResult& result, const std::string& server,
                    nlohmann::json* entry) {
  (*entry)["model_version"] = result.model.head_version();
  (*entry)["backbone"] = result.model.backbone();
  (*entry)["checkpoint_digest"] = result.model.checkpoint_digest();
  (*entry)["masks"] = result.masks;
  (*entry)["server"] = server;
  const v1::LabelGeometry& g = result.geometry;
  (*entry)["input_size"] = {g.input_width(), g.input_height()};
  (*entry)["output_size"] = {result.labels.width, result.labels.height};
  (*entry)["output"] = std::string(OutputSizeName(g.output_size()));
  (*entry)["crop"] = std::string(CropModeName(g.crop()));
  (*entry)["resize"] = g.resize();
}

// One worker of the job: takes the next image until none is left, with one
// client per server; it starts on its own server and moves on to the next
// when a call fails.
class LabelWorker {
 public:
  LabelWorker(const LabelJobOptions& options, const JobPlan& plan,
              const std::string& root, const std::vector<std::string>& files,
              std::atomic<size_t>* next, Manifest* manifest,
              JobCounters* counters)
      : options_(options),
        plan_(plan),
        root_(root),
        files_(files),
        next_(next),
        manifest_(manifest),
        counters_(counters) {}

  absl::Status Connect(int worker_index) {
    for (const std::string& server : options_.servers) {
      ClientOptions client_options;
      client_options.target = server;
      client_options.retries = 0;  // retries happen here, across servers
      client_options.deadline = options_.deadline;
      ASSIGN_OR_RETURN(std::unique_ptr<PrimapsClient> client,
                       PrimapsClient::Create(client_options));
      clients_.push_back(std::move(client));
    }
    seed_ = static_cast<uint32_t>(worker_index * 7919 + 1);
    server_ = static_cast<size_t>(worker_index) % clients_.size();
    return absl::OkStatus();
  }

  void Run() {
    while (!(options_.stop != nullptr && options_.stop->load())) {
      const size_t i = (*next_)++;
      if (i >= files_.size()) break;
      const std::string& rel = files_[i];
      if (options_.resume && IsCompletePng(LabelPath(rel))) {
        ++counters_->skipped;
        continue;
      }
      const absl::Time t0 = absl::Now();
      nlohmann::json entry = {{"path", rel}};
      const absl::Status status = LabelOne(rel, &entry);
      entry["ms"] =
          static_cast<int64_t>(absl::ToDoubleMilliseconds(absl::Now() - t0));
      if (status.ok()) {
        entry["status"] = "ok";
        ++counters_->done;
      } else {
        entry["status"] = "failed";
        entry["error"] = absl::StrCat(absl::StatusCodeToString(status.code()),
                                      ": ", status.message());
        ++counters_->failed;
      }
      manifest_->Append(entry);
    }
  }

 private:
  std::string LabelPath(const std::string& rel) const {
    return plan_.reference
               ? absl::StrCat(options_.output, "/pseudos/", PngStem(rel))
               : absl::StrCat(options_.output, "/", PngStem(rel));
  }

  // Labels one image and writes its outputs; `entry` gets the manifest's
  // fields.
  absl::Status LabelOne(const std::string& rel, nlohmann::json* entry) {
    ASSIGN_OR_RETURN(const std::string bytes,
                     ReadFile(rel[0] == '/' ? rel : root_ + "/" + rel));
    RgbImage crop;  // the reference layout's training crop
    ASSIGN_OR_RETURN(const v1::ImageRequest request,
                     BuildRequest(plan_, options_, rel, bytes, &crop));
    std::string served_by;
    ASSIGN_OR_RETURN(LabelCallResult result,
                     CallWithFailover(request, &served_by));
    if (plan_.reference) {
      // The reference's pseudos/: mask k as id k, background 255.
      for (uint8_t& id : result.labels.labels) {
        if (id == 0) id = kIgnoreLabel;
      }
    }
    ASSIGN_OR_RETURN(const std::string png, EncodeLabelPng(result.labels));
    RETURN_IF_ERROR(WriteCreatingDirs(LabelPath(rel), png));
    if (options_.overlays) {
      // An overlay is a picture for people: one that cannot be drawn is
      // noted in the manifest, and the labels still count.
      auto overlay = OverlayPng(bytes, result, plan_.mode);
      const absl::Status written =
          overlay.ok()
              ? WriteCreatingDirs(
                    absl::StrCat(options_.output, "/overlays/", PngStem(rel)),
                    *overlay)
              : overlay.status();
      if (!written.ok()) (*entry)["overlay_error"] = written.ToString();
    }
    if (plan_.reference) {
      RETURN_IF_ERROR(
          WriteReferenceExtras(options_, rel, crop, plan_.reference_resize));
    }
    DescribeResult(result, served_by, entry);
    return absl::OkStatus();
  }

  // The call, retried with Backoff on retryable codes, each retry on the
  // next server.
  absl::StatusOr<LabelCallResult> CallWithFailover(
      const v1::ImageRequest& request, std::string* served_by) {
    Backoff backoff(options_.initial_backoff, options_.max_backoff, seed_++);
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<LabelCallResult> result =
          CallLabels(clients_[server_].get(), plan_.mode, request);
      *served_by = clients_[server_]->options().target;
      if (result.ok() || !IsRetryable(result.status().code())) return result;
      // Fail over: the next call (this image's retry, or the next image)
      // goes to the next server.
      server_ = (server_ + 1) % clients_.size();
      if (attempt >= options_.retries) return result;
      backoff.Wait();
    }
  }

  const LabelJobOptions& options_;
  const JobPlan& plan_;
  const std::string& root_;
  const std::vector<std::string>& files_;
  std::atomic<size_t>* next_;
  Manifest* manifest_;
  JobCounters* counters_;
  std::vector<std::unique_ptr<PrimapsClient>> clients_;
  uint32_t seed_ = 0;  // of the next call's backoff jitter
  size_t server_ = 0;
};

}  // namespace

absl::StatusOr<LabelJobSummary> RunLabelJob(const LabelJobOptions& options) {
  ASSIGN_OR_RETURN(const JobPlan plan, PlanJob(options));
  std::string root;
  ASSIGN_OR_RETURN(const std::vector<std::string> files,
                   ListShard(options, &root));
  RETURN_IF_ERROR(PrepareOutputDir(options.output));
  Manifest manifest(absl::StrCat(options.output, "/manifest-",
                                 options.shard_index, "-of-",
                                 options.shard_count, ".jsonl"));
  if (!manifest.ok()) {
    // The usual cause in a container: a host directory owned by someone
    // other than the container's user.
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot write the manifest in ", options.output,
        ::access(options.output.c_str(), W_OK) == 0
            ? ""
            : absl::StrCat(": the directory is not writable by uid ",
                           ::geteuid(), "; make it writable (e.g. `chown ",
                           ::geteuid(),
                           " DIR` on the host) or run as its owner (Docker "
                           "Compose: PRIMAPS_UID=$(id -u))")));
  }

  JobCounters counters;
  std::atomic<size_t> next{0};
  std::vector<std::unique_ptr<LabelWorker>> workers;
  for (int w = 0; w < std::max(1, options.concurrency); ++w) {
    workers.push_back(std::make_unique<LabelWorker>(
        options, plan, root, files, &next, &manifest, &counters));
    RETURN_IF_ERROR(workers.back()->Connect(w));
  }
  LabelJobSummary summary;
  summary.total = static_cast<int64_t>(files.size());
  const absl::Time start = absl::Now();
  {
    ProgressReporter progress(summary.total, options.log_every, &counters);
    std::vector<std::thread> threads;
    for (auto& worker : workers)
      threads.emplace_back([&worker] { worker->Run(); });
    for (auto& t : threads) t.join();
  }
  summary.done = counters.done;
  summary.skipped = counters.skipped;
  summary.failed = counters.failed;
  summary.interrupted = options.stop != nullptr && options.stop->load();
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

}  // namespace primaps
