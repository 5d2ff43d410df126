#include "client/label_job.h"

#include <unistd.h>

#include <algorithm>
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

absl::StatusOr<LabelJobSummary> RunLabelJob(const LabelJobOptions& options) {
  if (options.servers.empty())
    return absl::InvalidArgumentError("no servers (--server)");
  ASSIGN_OR_RETURN(const LabelMode requested_mode,
                   ParseLabelMode(options.mode, "--mode"));
  ASSIGN_OR_RETURN(v1::OutputSize output_size,
                   ParseOutputSize(options.output_size));
  if (options.layout == "reference" &&
      output_size == v1::OUTPUT_SIZE_ORIGINAL) {
    return absl::InvalidArgumentError(
        "--layout=reference holds images and labels at the training crop; "
        "--output_size=original does not apply");
  }
  // Labels a user trains on must cover each image: original by default.
  if (output_size == v1::OUTPUT_SIZE_UNSPECIFIED)
    output_size = v1::OUTPUT_SIZE_ORIGINAL;
  if (options.layout != "mirror" && options.layout != "reference") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--layout is \"", options.layout, "\", expected mirror or reference"));
  }
  if (options.layout == "reference" && options.mode == "segment") {
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
  std::string root;
  ASSIGN_OR_RETURN(const std::vector<std::string> files,
                   ListShard(options, &root));
  std::error_code ec;
  fs::create_directories(options.output, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", options.output, ": ", ec.message()));
  // A killed run can leave WriteFileAtomically's temporary files behind
  // (never at an output name); remove them.
  for (auto it = fs::recursive_directory_iterator(options.output, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) &&
        it->path().filename().string().find(".tmp.") != std::string::npos) {
      fs::remove(it->path(), ec);
    }
  }
  Manifest manifest(absl::StrCat(options.output, "/manifest-",
                                 options.shard_index, "-of-",
                                 options.shard_count, ".jsonl"));
  if (!manifest.ok())
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write the manifest in ", options.output));

  const bool reference = options.layout == "reference";
  const int reference_resize = options.resize > 0 ? options.resize : 320;
  // The reference layout holds class-agnostic PriMaPs masks, whatever head
  // the server has: always ProposeMasks.
  const LabelMode mode = reference ? LabelMode::kPropose : requested_mode;
  auto label_path = [&](const std::string& rel) {
    const std::string stem = PngStem(rel);
    return reference ? absl::StrCat(options.output, "/pseudos/", stem)
                     : absl::StrCat(options.output, "/", stem);
  };
  auto input_path = [&](const std::string& rel) {
    return rel[0] == '/' ? rel : absl::StrCat(root, "/", rel);
  };

  LabelJobSummary summary;
  summary.total = static_cast<int64_t>(files.size());
  std::atomic<int64_t> done{0}, skipped{0}, failed{0};
  std::atomic<size_t> next{0};
  const absl::Time start = absl::Now();
  std::atomic<bool> finished{false};

  // Progress: a bar on a terminal, a log line every log_every otherwise.
  std::thread progress([&] {
    const bool tty = ::isatty(STDERR_FILENO);
    absl::Time last_line = absl::Now();
    while (!finished) {
      absl::SleepFor(absl::Milliseconds(tty ? 300 : 200));
      const int64_t d = done, s = skipped, f = failed;
      const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
      const double rate = d / std::max(elapsed, 1e-9);
      const double eta = (summary.total - d - s - f) / std::max(rate, 1e-9);
      const int64_t finished_count = d + s + f;
      if (tty) {
        const int width = 30;
        const int filled =
            summary.total
                ? static_cast<int>(width * finished_count / summary.total)
                : width;
        std::fprintf(stderr,
                     "\r[%s%s] %lld/%lld  %.1f img/s  ETA %s  failed %lld ",
                     std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(),
                     static_cast<long long>(finished_count),
                     static_cast<long long>(summary.total), rate,
                     Eta(eta).c_str(), static_cast<long long>(f));
      } else if (absl::Now() - last_line >= options.log_every) {
        last_line = absl::Now();
        std::fprintf(stderr,
                     "label: %lld/%lld done (%lld skipped, %lld failed), %.1f "
                     "img/s, ETA %s\n",
                     static_cast<long long>(finished_count),
                     static_cast<long long>(summary.total),
                     static_cast<long long>(s), static_cast<long long>(f), rate,
                     Eta(eta).c_str());
      }
    }
    if (tty) std::fprintf(stderr, "\n");
  });

  auto worker = [&](int worker_index) {
    // One client per server per worker; a worker starts on its own server
    // and moves on to the next when a call fails.
    std::vector<std::unique_ptr<PrimapsClient>> clients;
    for (const std::string& server : options.servers) {
      ClientOptions client_options;
      client_options.target = server;
      client_options.retries = 0;  // retries happen here, across servers
      client_options.deadline = options.deadline;
      clients.push_back(*PrimapsClient::Create(client_options));
    }
    std::mt19937 rng(static_cast<uint32_t>(worker_index * 7919 + 1));
    size_t server = static_cast<size_t>(worker_index) % clients.size();
    while (!(options.stop != nullptr && options.stop->load())) {
      const size_t i = next++;
      if (i >= files.size()) break;
      const std::string& rel = files[i];
      const std::string out = label_path(rel);
      if (options.resume && IsCompletePng(out)) {
        ++skipped;
        continue;
      }
      const absl::Time t0 = absl::Now();
      nlohmann::json entry = {{"path", rel}};
      absl::Status status;
      absl::StatusOr<LabelCallResult> result = absl::UnknownError("not run");
      RgbImage crop;  // the reference layout's training crop
      std::string served_by;
      auto bytes = ReadFile(input_path(rel));
      if (!bytes.ok()) {
        status = bytes.status();
      } else {
        v1::ImageRequest request;
        request.set_request_id(rel);
        if (reference) {
          // The crop is made here and sent as pixels, so that imgs/ holds
          // exactly what the pseudo labels describe.
          auto rgb = DecodeImage(*bytes);
          if (rgb.ok()) {
            crop = ResizeAndCropAntialias(*rgb, reference_resize,
                                          CropMode::kCenter);
            v1::RawImage* raw = request.mutable_image()->mutable_raw();
            raw->set_width(crop.width);
            raw->set_height(crop.height);
            raw->set_channels(3);
            raw->set_pixels(crop.pixels.data(), crop.pixels.size());
            request.mutable_preprocess()->set_resize(reference_resize);
            request.mutable_preprocess()->set_crop(v1::CROP_MODE_CENTER);
          } else {
            status = rgb.status();
          }
        } else {
          request.mutable_image()->set_encoded(*bytes);
          request.mutable_preprocess()->set_resize(options.resize);
          request.mutable_preprocess()->set_output_size(output_size);
        }
        absl::Duration backoff = options.initial_backoff;
        for (int attempt = 0; status.ok() && attempt <= options.retries;
             ++attempt) {
          result = CallLabels(clients[server].get(), mode, request);
          served_by = clients[server]->options().target;
          if (result.ok() || !IsRetryable(result.status().code())) break;
          server = (server + 1) % clients.size();  // fail over
          if (attempt == options.retries) break;
          std::uniform_real_distribution<double> jitter(0.5, 1.0);
          absl::SleepFor(backoff * jitter(rng));
          backoff = std::min(backoff * 2, options.max_backoff);
        }
        if (status.ok()) status = result.status();
      }
      if (status.ok()) {
        if (reference) {
          // The reference's pseudos/: mask k as id k, background 255.
          for (uint8_t& id : result->labels.labels) {
            if (id == 0) id = kIgnoreLabel;
          }
        }
        auto png = EncodeLabelPng(result->labels);
        status = png.ok() ? WriteCreatingDirs(out, *png) : png.status();
        if (status.ok() && options.overlays) {
          // An overlay is a picture for people: one that cannot be drawn
          // is noted in the manifest, and the labels still count.
          auto overlay = OverlayPng(*bytes, *result, mode);
          const absl::Status written =
              overlay.ok()
                  ? WriteCreatingDirs(absl::StrCat(options.output, "/overlays/",
                                                   PngStem(rel)),
                                      *overlay)
                  : overlay.status();
          if (!written.ok()) entry["overlay_error"] = written.ToString();
        }
        if (status.ok() && reference) {
          status = WriteReferenceExtras(options, rel, crop, reference_resize);
        }
      }
      entry["ms"] =
          static_cast<int64_t>(absl::ToDoubleMilliseconds(absl::Now() - t0));
      if (status.ok()) {
        entry["status"] = "ok";
        entry["model_version"] = result->model.head_version();
        entry["backbone"] = result->model.backbone();
        entry["checkpoint_digest"] = result->model.checkpoint_digest();
        entry["masks"] = result->masks;
        entry["server"] = served_by;
        // What the label map is aligned with.
        const v1::LabelGeometry& g = result->geometry;
        entry["input_size"] = {g.input_width(), g.input_height()};
        entry["output_size"] = {result->labels.width, result->labels.height};
        entry["output"] = g.output_size() == v1::OUTPUT_SIZE_ORIGINAL
                              ? "original"
                              : "processed";
        entry["crop"] = g.crop() == v1::CROP_MODE_FULL ? "full" : "center";
        entry["resize"] = g.resize();
        ++done;
      } else {
        entry["status"] = "failed";
        entry["error"] = absl::StrCat(absl::StatusCodeToString(status.code()),
                                      ": ", status.message());
        ++failed;
      }
      manifest.Append(entry);
    }
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < std::max(1, options.concurrency); ++w)
    workers.emplace_back(worker, w);
  for (auto& t : workers) t.join();
  finished = true;
  progress.join();
  summary.done = done;
  summary.skipped = skipped;
  summary.failed = failed;
  summary.interrupted = options.stop != nullptr && options.stop->load();
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

}  // namespace primaps
