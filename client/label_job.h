// The batch pseudo-label job (`primaps-client label`): every image under a
// directory (or in a list file) through one or more servers, label PNGs
// written next to nothing else, resumable, shardable, never a corrupt
// output.
#ifndef PRIMAPS_CLIENT_LABEL_JOB_H_
#define PRIMAPS_CLIENT_LABEL_JOB_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace primaps {

struct LabelJobOptions {
  // Servers ("host:port"); work is spread over them, and a failed call
  // moves to the next one.
  std::vector<std::string> servers;
  // A directory (searched recursively for .png .jpg .jpeg .bmp .webp .tif
  // .tiff) or a text file with one path per line (relative paths are
  // relative to the file's directory).
  std::string input;
  std::string output;
  // "propose", "pseudo" or "segment".
  std::string mode = "pseudo";
  // Images in flight at once (one worker thread each).
  int concurrency = 8;
  // This shard of the input: files whose relative path hashes to
  // shard_index modulo shard_count.
  int shard_index = 0;
  int shard_count = 1;
  // Attempts per image after the first, on UNAVAILABLE,
  // RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED.
  int retries = 5;
  absl::Duration deadline = absl::Seconds(120);
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
  // Skip images whose output exists and is a complete PNG.
  bool resume = true;
  // Also write colour overlays under <output>/overlays/.
  bool overlays = false;
  // "mirror": <output>/<relative path>.png. "reference": imgs/, pseudos/
  // and (with labels_dir) gts/, as the reference PriMaPs code lays out
  // precomputed pseudo labels: all three at the training crop (Pillow's
  // antialiased resize of the short side to `resize` and the center crop;
  // labels with Pillow's nearest), so that primaps-trainer --train reads
  // them as they are. pseudos/ holds the class-agnostic PriMaPs masks (mask
  // k as id k, background 255, from ProposeMasks whatever head the server
  // has; mode "segment" is refused).
  std::string layout = "mirror";
  // "original" (the default: one label per input pixel, the image processed
  // whole) or "processed" (the server's preprocessed size). The reference
  // layout is always at its training crop.
  std::string output_size;
  // Short side after resizing; 0 = the server's default (320 for the
  // reference layout, whose crop the client makes).
  int resize = 0;
  // Ground-truth label PNGs (same relative stems), for the reference layout.
  std::string labels_dir;
  // Progress: a bar when stderr is a terminal, else a line this often.
  absl::Duration log_every = absl::Seconds(10);
  // Set to stop: in-flight images finish, the manifest is flushed.
  std::atomic<bool>* stop = nullptr;
};

struct LabelJobSummary {
  int64_t total = 0;    // images in this shard
  int64_t done = 0;     // labelled now
  int64_t skipped = 0;  // already complete (resume)
  int64_t failed = 0;
  bool interrupted = false;
  double seconds = 0;
};

// The files of the job's shard, as paths relative to the input root, sorted.
absl::StatusOr<std::vector<std::string>> ListShard(
    const LabelJobOptions& options, std::string* root);

// Whether `path` holds a complete PNG (signature, IHDR, IEND at the end).
bool IsCompletePng(const std::string& path);

// Shard of a relative path (FNV-1a 64 of its bytes, modulo shard_count).
int ShardOf(const std::string& relative_path, int shard_count);

absl::StatusOr<LabelJobSummary> RunLabelJob(const LabelJobOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_CLIENT_LABEL_JOB_H_
